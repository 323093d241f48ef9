/**
 * A tab's stage snapshots (src/net/snapshots.ts): in the Origin Private File System, or in IndexedDB where the
 * browser has no OPFS (older Safari, some private modes). Both survive a reload and a closed tab; a volunteer
 * clears them from the Volunteer page.
 *
 * OPFS layout, one folder `tessera-snapshots/`:
 * - `<model>~<stage>~<step>~<random>.snap`: the checkpoint bytes, under a name no earlier write used;
 * - `<model>~<stage>~<step>.json`: the snapshot's entry (SnapshotInfo and the data file's name), written last.
 * A put writes the data to `….part` through createWritable() (which itself writes a swap file and commits it on
 * close), renames it to `….snap` where FileSystemFileHandle.move exists, and only then (re)writes the entry. A torn
 * write therefore leaves a data file no entry names, and the previous snapshot of the key stays readable; such
 * leftovers are swept on the next put of the same model and stage. The IndexedDB store writes the data, the entry
 * and the pruning in one transaction, which is atomic by itself.
 */
import {
  SNAPSHOTS_KEPT,
  SnapshotError,
  snapshotName,
  type SnapshotInfo,
  type SnapshotKey,
  type SnapshotStore,
} from '../../net/snapshots.ts';

export const SNAPSHOT_DIR = 'tessera-snapshots';
const IDB_NAME = 'tessera-snapshots';
/** Web Lock held around every write, so two tabs of the origin (one training, one clearing) never interleave. */
const LOCK = 'tessera-snapshots';

export type SnapshotBackend = 'opfs' | 'indexeddb';

/** A SnapshotStore that also says when its content changed (the Volunteer page's storage figure follows it). */
export interface BrowserSnapshots extends SnapshotStore {
  readonly backend: SnapshotBackend;
  /** Calls `listener` after every put, remove and clear; returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
}

interface Entry extends SnapshotInfo {
  /** The data file (OPFS) or data record key (IndexedDB). */
  file: string;
}

async function sha256(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', own(data)));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** The bytes in a buffer of their own: a view into a larger (or shared) buffer would store or hash the rest too. */
function own(data: Uint8Array): Uint8Array<ArrayBuffer> {
  return data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
    ? (data as Uint8Array<ArrayBuffer>)
    : new Uint8Array(data);
}

function checkKey(k: SnapshotKey): void {
  const bad =
    typeof k?.model !== 'string' || k.model === ''
      ? 'the model id is empty'
      : !Number.isSafeInteger(k.stage) || k.stage < 0
        ? `stage ${k.stage} is not a whole number ≥ 0`
        : !Number.isSafeInteger(k.step) || k.step < 0
          ? `step ${k.step} is not a whole number ≥ 0`
          : undefined;
  if (bad) throw new SnapshotError(`bad snapshot key ${JSON.stringify(k)}: ${bad}`);
}

/** File-name prefix of a model and stage: `~` separates, so it is escaped in the (URI-encoded) model id. */
const modelPrefix = (model: string) => `${encodeURIComponent(model).replaceAll('~', '%7E')}~`;
const prefix = (model: string, stage: number) => `${modelPrefix(model)}${stage}~`;
const keyName = (k: SnapshotKey) => `${prefix(k.model, k.stage)}${k.step}`;
const newestFirst = (a: SnapshotInfo, b: SnapshotInfo) =>
  b.step - a.step || a.model.localeCompare(b.model) || a.stage - b.stage;
const info = ({ file: _, ...rest }: Entry): SnapshotInfo => rest;

function isEntry(v: unknown): v is Entry {
  const e = v as Entry;
  return (
    !!e &&
    typeof e.model === 'string' &&
    Number.isSafeInteger(e.stage) &&
    Number.isSafeInteger(e.step) &&
    typeof e.specHash === 'string' &&
    Number.isSafeInteger(e.bytes) &&
    /^[0-9a-f]{64}$/.test(e.sha256) &&
    typeof e.file === 'string' &&
    typeof e.at === 'number'
  );
}

/** The bytes read back must be the ones written: size and SHA-256 against the entry. */
async function verified(e: Entry, data: Uint8Array): Promise<Uint8Array> {
  if (data.byteLength !== e.bytes)
    throw new SnapshotError(`${snapshotName(e)} is torn: ${data.byteLength} bytes stored, its entry says ${e.bytes}`);
  const hash = await sha256(data);
  if (hash !== e.sha256)
    throw new SnapshotError(
      `${snapshotName(e)} is corrupt: its SHA-256 is ${hash.slice(0, 12)}…, its entry says ${e.sha256.slice(0, 12)}…`,
    );
  return data;
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  return navigator.locks ? await navigator.locks.request(LOCK, fn) : fn();
}

let persistAsked = false;
/**
 * Asks once per page for persistent storage, so the browser does not evict the snapshots under storage pressure.
 * Best effort: Chromium grants or denies silently (by engagement), Firefox may ask the volunteer.
 */
function askPersist(): void {
  if (persistAsked) return;
  persistAsked = true;
  navigator.storage?.persist?.().catch(() => {});
}

/** Common to both backends: key checks, the change listeners, the error wording. */
abstract class Base implements BrowserSnapshots {
  abstract readonly backend: SnapshotBackend;
  abstract readonly where: string;
  private readonly listeners = new Set<() => void>();

  protected abstract entries(model?: string): Promise<Entry[]>;
  protected abstract write(e: Entry, data: Uint8Array<ArrayBuffer>): Promise<void>;
  protected abstract read(k: SnapshotKey): Promise<{ entry: Entry; data: Uint8Array } | undefined>;
  protected abstract delete(k: SnapshotKey): Promise<void>;
  protected abstract wipe(): Promise<void>;
  protected abstract bytesUsed(entries: Entry[]): Promise<number>;

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  async list(model?: string): Promise<SnapshotInfo[]> {
    return (await this.entries(model)).map(info).sort(newestFirst);
  }

  async put(key: SnapshotKey & { specHash: string }, data: Uint8Array): Promise<SnapshotInfo> {
    checkKey(key);
    if (!(data instanceof Uint8Array)) throw new SnapshotError(`${snapshotName(key)}: the data is not bytes`);
    if (typeof key.specHash !== 'string' || key.specHash === '')
      throw new SnapshotError(`${snapshotName(key)}: no RunSpec hash given`);
    askPersist();
    const bytes = own(data);
    const entry: Entry = {
      model: key.model,
      stage: key.stage,
      step: key.step,
      specHash: key.specHash,
      bytes: bytes.byteLength,
      sha256: await sha256(bytes),
      at: Date.now(),
      file: `${keyName(key)}~${crypto.randomUUID()}`,
    };
    try {
      await withLock(() => this.write(entry, bytes));
    } catch (e) {
      if (e instanceof SnapshotError) throw e;
      const why = (e as Error).name === 'QuotaExceededError' ? 'the browser’s storage quota is used up' : String(e);
      throw new SnapshotError(`cannot store ${snapshotName(key)} in ${this.where}: ${why}`, { cause: e });
    } finally {
      this.changed();
    }
    return info(entry);
  }

  async get(key: SnapshotKey): Promise<Uint8Array | undefined> {
    checkKey(key);
    let found: Awaited<ReturnType<Base['read']>>;
    try {
      found = await this.read(key);
    } catch (e) {
      if (e instanceof SnapshotError) throw e;
      throw new SnapshotError(`cannot read ${snapshotName(key)} from ${this.where}: ${String(e)}`, { cause: e });
    }
    return found && verified(found.entry, found.data);
  }

  async remove(key: SnapshotKey): Promise<void> {
    checkKey(key);
    await withLock(() => this.delete(key));
    this.changed();
  }

  async clear(): Promise<void> {
    await withLock(() => this.wipe());
    this.changed();
  }

  async usage(): Promise<{ bytes: number; count: number }> {
    const entries = await this.entries();
    return { bytes: await this.bytesUsed(entries), count: entries.length };
  }

  /** The entries of `e`'s model and stage beyond the newest SNAPSHOTS_KEPT (`e` counted in). */
  protected pruned(e: Entry, others: Entry[]): Entry[] {
    const same = others.filter((o) => o.model === e.model && o.stage === e.stage && o.step !== e.step);
    return [e, ...same].sort(newestFirst).slice(SNAPSHOTS_KEPT);
  }
}

type Dir = FileSystemDirectoryHandle;
const names = (dir: Dir) => (dir as unknown as { keys(): AsyncIterable<string> }).keys();
const isMissing = (e: unknown) => (e as Error)?.name === 'NotFoundError';

export class OpfsSnapshots extends Base {
  readonly backend = 'opfs';
  readonly where = 'this browser’s private file system (OPFS)';
  private readonly root: Dir;

  constructor(root: Dir) {
    super();
    this.root = root;
  }

  static async open(): Promise<OpfsSnapshots> {
    return new OpfsSnapshots(await navigator.storage.getDirectory());
  }

  private dir(): Promise<Dir> {
    return this.root.getDirectoryHandle(SNAPSHOT_DIR, { create: true });
  }

  private async writeFile(dir: Dir, name: string, data: Uint8Array<ArrayBuffer> | string) {
    const handle = await dir.getFileHandle(name, { create: true });
    const w = await handle.createWritable();
    try {
      await w.write(data);
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      throw e;
    }
    return handle;
  }

  /** The entry file's content, undefined when there is none; an unreadable one is reported, not skipped. */
  private async entry(dir: Dir, name: string): Promise<Entry | undefined> {
    let text: string;
    try {
      text = await (await (await dir.getFileHandle(name)).getFile()).text();
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      v = undefined;
    }
    if (!isEntry(v)) throw new SnapshotError(`the snapshot entry ${name} in ${this.where} is unreadable`);
    return v;
  }

  protected async entries(model?: string): Promise<Entry[]> {
    const dir = await this.dir();
    const out: Entry[] = [];
    const mine = model === undefined ? '' : modelPrefix(model);
    for await (const name of names(dir)) {
      if (!name.endsWith('.json') || !name.startsWith(mine)) continue;
      // A damaged entry cannot name its snapshot: it is left out here, and get() of its key reports it.
      const e = await this.entry(dir, name).catch(() => undefined);
      if (e && (model === undefined || e.model === model)) out.push(e);
    }
    return out;
  }

  protected async write(e: Entry, data: Uint8Array<ArrayBuffer>): Promise<void> {
    const dir = await this.dir();
    const handle = await this.writeFile(dir, `${e.file}.part`, data);
    const movable = handle as FileSystemFileHandle & { move?: (name: string) => Promise<void> };
    if (typeof movable.move === 'function') {
      await movable.move(`${e.file}.snap`);
      e.file = `${e.file}.snap`;
    } else e.file = `${e.file}.part`;
    const metaName = `${keyName(e)}.json`;
    const before = await this.entry(dir, metaName).catch(() => undefined);
    // The commit point: until this entry is written, nothing refers to the new data file.
    await this.writeFile(dir, metaName, JSON.stringify(e));
    const others = (await this.entries(e.model)).filter((o) => o.stage === e.stage);
    for (const old of this.pruned(e, others)) await this.deleteIn(dir, old);
    // Leftovers of this model and stage: the replaced data file, and any torn write no entry names.
    const p = prefix(e.model, e.stage);
    const named = new Set([e.file, ...others.map((o) => o.file)]);
    const stale: string[] = [];
    for await (const name of names(dir))
      if (name.startsWith(p) && !name.endsWith('.json') && !named.has(name)) stale.push(name);
    if (before && before.file !== e.file) stale.push(before.file);
    for (const name of new Set(stale)) await dir.removeEntry(name).catch(() => {});
  }

  private async deleteIn(dir: Dir, e: SnapshotKey): Promise<void> {
    const metaName = `${keyName(e)}.json`;
    const entry = await this.entry(dir, metaName).catch(() => undefined);
    // The entry first: a data file without one is a leftover, an entry without its data would be a broken snapshot.
    await dir.removeEntry(metaName).catch((x) => {
      if (!isMissing(x)) throw x;
    });
    if (entry) await dir.removeEntry(entry.file).catch(() => {});
  }

  protected async read(k: SnapshotKey): Promise<{ entry: Entry; data: Uint8Array } | undefined> {
    const dir = await this.dir();
    const entry = await this.entry(dir, `${keyName(k)}.json`);
    if (!entry) return undefined;
    let file: File;
    try {
      file = await (await dir.getFileHandle(entry.file)).getFile();
    } catch (e) {
      if (isMissing(e)) throw new SnapshotError(`${snapshotName(k)} is missing its data file ${entry.file}`);
      throw e;
    }
    return { entry, data: new Uint8Array(await file.arrayBuffer()) };
  }

  protected async delete(k: SnapshotKey): Promise<void> {
    await this.deleteIn(await this.dir(), k);
  }

  protected async wipe(): Promise<void> {
    await this.root.removeEntry(SNAPSHOT_DIR, { recursive: true }).catch((e) => {
      if (!isMissing(e)) throw e;
    });
  }

  /** What the folder takes on disk: entries, data, and any leftover a crash left behind. */
  protected async bytesUsed(): Promise<number> {
    const dir = await this.dir();
    let total = 0;
    for await (const name of names(dir)) {
      const h = await dir.getFileHandle(name).catch(() => undefined);
      if (h) total += (await h.getFile()).size;
    }
    return total;
  }
}

const request = <T>(r: IDBRequest<T>) =>
  new Promise<T>((ok, fail) => {
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
const done = (t: IDBTransaction) =>
  new Promise<void>((ok, fail) => {
    t.oncomplete = () => ok();
    t.onerror = () => fail(t.error);
    t.onabort = () => fail(t.error ?? new DOMException('transaction aborted', 'AbortError'));
  });

/** Database `tessera-snapshots`: store `entries` (Entry by key name) and `data` (bytes by the entry's `file`). */
export class IdbSnapshots extends Base {
  readonly backend = 'indexeddb';
  readonly where = 'this browser’s IndexedDB';
  private readonly db: IDBDatabase;

  constructor(db: IDBDatabase) {
    super();
    this.db = db;
  }

  static async open(): Promise<IdbSnapshots> {
    const open = indexedDB.open(IDB_NAME, 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore('entries');
      open.result.createObjectStore('data');
    };
    const db = await request(open);
    // Another tab deleting or upgrading the database must not hang on this connection.
    db.onversionchange = () => db.close();
    return new IdbSnapshots(db);
  }

  protected async entries(model?: string): Promise<Entry[]> {
    const all = (await request(this.db.transaction('entries').objectStore('entries').getAll())) as unknown[];
    return all.filter(isEntry).filter((e) => model === undefined || e.model === model);
  }

  protected async write(e: Entry, data: Uint8Array<ArrayBuffer>): Promise<void> {
    const t = this.db.transaction(['entries', 'data'], 'readwrite');
    const finished = done(t);
    const entries = t.objectStore('entries');
    const blobs = t.objectStore('data');
    const all = ((await request(entries.getAll())) as unknown[]).filter(isEntry);
    const before = all.find((o) => o.model === e.model && o.stage === e.stage && o.step === e.step);
    if (before) blobs.delete(before.file);
    blobs.put(data, e.file);
    entries.put(e, keyName(e));
    for (const old of this.pruned(
      e,
      all.filter((o) => o.model === e.model && o.stage === e.stage),
    )) {
      entries.delete(keyName(old));
      blobs.delete(old.file);
    }
    await finished;
  }

  protected async read(k: SnapshotKey): Promise<{ entry: Entry; data: Uint8Array } | undefined> {
    const t = this.db.transaction(['entries', 'data']);
    const v = await request(t.objectStore('entries').get(keyName(k)));
    if (v === undefined) return undefined;
    if (!isEntry(v)) throw new SnapshotError(`the entry of ${snapshotName(k)} in ${this.where} is unreadable`);
    const data: unknown = await request(t.objectStore('data').get(v.file));
    if (data === undefined) throw new SnapshotError(`${snapshotName(k)} is missing its data record`);
    if (!(data instanceof Uint8Array)) throw new SnapshotError(`${snapshotName(k)}: its data record is not bytes`);
    return { entry: v, data };
  }

  protected async delete(k: SnapshotKey): Promise<void> {
    const t = this.db.transaction(['entries', 'data'], 'readwrite');
    const finished = done(t);
    const v = await request(t.objectStore('entries').get(keyName(k)));
    t.objectStore('entries').delete(keyName(k));
    if (isEntry(v)) t.objectStore('data').delete(v.file);
    await finished;
  }

  protected async wipe(): Promise<void> {
    const t = this.db.transaction(['entries', 'data'], 'readwrite');
    const finished = done(t);
    t.objectStore('entries').clear();
    t.objectStore('data').clear();
    await finished;
  }

  protected async bytesUsed(entries: Entry[]): Promise<number> {
    return entries.reduce((n, e) => n + e.bytes, 0);
  }
}

/** Whether this browser has a usable OPFS (absent in older Safari; refused in some private modes). */
async function opfsWorks(): Promise<boolean> {
  try {
    const root = await navigator.storage.getDirectory();
    const probe = await root.getFileHandle('.tessera-probe', { create: true });
    // createWritable is what put() needs; Safari had getDirectory() long before it.
    if (typeof probe.createWritable !== 'function') return false;
    await root.removeEntry('.tessera-probe');
    return true;
  } catch {
    return false;
  }
}

const opened = new Map<SnapshotBackend, Promise<BrowserSnapshots>>();
let chosen: Promise<SnapshotBackend> | undefined;

/**
 * The tab's snapshot store, one per backend and page (the worker writes through it and the Volunteer page watches
 * it): OPFS where it works, else IndexedDB. `backend` forces one (tests check both).
 */
export async function browserSnapshots(backend?: SnapshotBackend): Promise<BrowserSnapshots> {
  chosen ??= opfsWorks().then((ok) => (ok ? 'opfs' : 'indexeddb'));
  const use = backend ?? (await chosen);
  let p = opened.get(use);
  if (!p) {
    p = use === 'opfs' ? OpfsSnapshots.open() : IdbSnapshots.open();
    opened.set(use, p);
    p.catch(() => opened.delete(use));
  }
  return p;
}
