/**
 * A Node worker's stage snapshots in its state folder (`<state>/snapshots/<model>/stage-<s>/step-<k>.ckpt`
 * with a `.json` manifest beside each). Atomic by construction: the checkpoint and then its manifest are each
 * written to a temporary file, flushed to disk and renamed into place, and the folder is flushed; a snapshot
 * is listed only once its manifest exists, which is only after its data is in place. A SIGKILL at any line
 * leaves either the previous snapshots or the new one, plus at worst a temporary file that the next write of
 * that stage removes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SNAPSHOTS_KEPT, SnapshotError, type SnapshotInfo, type SnapshotKey, type SnapshotStore } from './snapshots.ts';

const MODEL = /^[a-z0-9][a-z0-9-]{0,63}$/;
const STEP_FILE = /^step-(\d+)\.json$/;

function checkKey(k: SnapshotKey): void {
  if (!MODEL.test(k.model)) throw new SnapshotError(`snapshot model id ${JSON.stringify(k.model)} is not a model id`);
  if (!Number.isSafeInteger(k.stage) || k.stage < 0 || !Number.isSafeInteger(k.step) || k.step < 0)
    throw new SnapshotError(`snapshot stage ${k.stage} / step ${k.step} must be non-negative integers`);
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Writes `data` to `path` so that a crash leaves either the old file or the new one, never a torn one. */
async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const dir = join(path, '..');
  const tmp = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
  const f = await open(tmp, 'w');
  try {
    await f.writeFile(data);
    await f.sync();
  } finally {
    await f.close();
  }
  await rename(tmp, path);
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

function parseManifest(raw: string, where: string): SnapshotInfo {
  const o = JSON.parse(raw) as Record<string, unknown>;
  const ints = ['stage', 'step', 'bytes', 'at'] as const;
  if (typeof o.model !== 'string' || typeof o.specHash !== 'string' || typeof o.sha256 !== 'string')
    throw new SnapshotError(`${where}: manifest lacks model, specHash or sha256`);
  for (const k of ints)
    if (!Number.isSafeInteger(o[k])) throw new SnapshotError(`${where}: manifest field ${k} is not an integer`);
  return {
    model: o.model,
    stage: o.stage as number,
    step: o.step as number,
    specHash: o.specHash,
    bytes: o.bytes as number,
    sha256: o.sha256,
    at: o.at as number,
  };
}

export class SnapshotFiles implements SnapshotStore {
  readonly where: string;
  private readonly root: string;
  private readonly log: (line: string) => void;

  constructor(stateDir: string, log: (line: string) => void = () => {}) {
    this.root = join(stateDir, 'snapshots');
    this.where = this.root;
    this.log = log;
  }

  private dirOf(k: Pick<SnapshotKey, 'model' | 'stage'>): string {
    return join(this.root, k.model, `stage-${k.stage}`);
  }

  private async names(dir: string): Promise<string[]> {
    try {
      return await readdir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  async list(model?: string): Promise<SnapshotInfo[]> {
    const models = model === undefined ? await this.names(this.root) : [model];
    const out: SnapshotInfo[] = [];
    for (const m of models) {
      if (!MODEL.test(m)) continue;
      for (const s of await this.names(join(this.root, m))) {
        const dir = join(this.root, m, s);
        for (const f of await this.names(dir)) {
          if (!STEP_FILE.test(f)) continue;
          try {
            out.push(parseManifest(await readFile(join(dir, f), 'utf8'), join(dir, f)));
          } catch (e) {
            // A manifest is renamed into place whole, so this is damage from outside: skip it, say so.
            this.log(`snapshot manifest ${join(dir, f)} is unreadable (${(e as Error).message}); ignored`);
          }
        }
      }
    }
    return out.sort((a, b) => b.step - a.step || a.stage - b.stage);
  }

  async put(key: SnapshotKey & { specHash: string }, data: Uint8Array): Promise<SnapshotInfo> {
    checkKey(key);
    const dir = this.dirOf(key);
    await mkdir(dir, { recursive: true });
    // Temporary files left by a write that was killed.
    for (const f of await this.names(dir)) if (f.startsWith('.tmp-')) await rm(join(dir, f), { force: true });
    const info: SnapshotInfo = {
      model: key.model,
      stage: key.stage,
      step: key.step,
      specHash: key.specHash,
      bytes: data.length,
      sha256: sha256(data),
      at: Date.now(),
    };
    await writeAtomic(join(dir, `step-${key.step}.ckpt`), data);
    await writeAtomic(join(dir, `step-${key.step}.json`), JSON.stringify(info));
    const older = (await this.list(key.model)).filter((x) => x.stage === key.stage).slice(SNAPSHOTS_KEPT);
    for (const x of older) await this.remove(x);
    return info;
  }

  async get(key: SnapshotKey): Promise<Uint8Array | undefined> {
    checkKey(key);
    const base = join(this.dirOf(key), `step-${key.step}`);
    let info: SnapshotInfo;
    try {
      info = parseManifest(await readFile(`${base}.json`, 'utf8'), `${base}.json`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e instanceof SnapshotError ? e : new SnapshotError(`${base}.json: ${(e as Error).message}`, { cause: e });
    }
    let data: Uint8Array;
    try {
      data = new Uint8Array(await readFile(`${base}.ckpt`));
    } catch (e) {
      throw new SnapshotError(`${base}.ckpt is listed but unreadable: ${(e as Error).message}`, { cause: e });
    }
    const got = sha256(data);
    if (got !== info.sha256)
      throw new SnapshotError(`${base}.ckpt does not match its manifest (sha256 ${got}, expected ${info.sha256})`);
    return data;
  }

  async remove(key: SnapshotKey): Promise<void> {
    checkKey(key);
    const base = join(this.dirOf(key), `step-${key.step}`);
    // Manifest first: a snapshot without a manifest is not listed, a manifest without its data would be.
    await rm(`${base}.json`, { force: true });
    await rm(`${base}.ckpt`, { force: true });
  }

  async clear(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  async usage(): Promise<{ bytes: number; count: number }> {
    const all = await this.list();
    let bytes = 0;
    for (const x of all) {
      const st = await stat(join(this.dirOf(x), `step-${x.step}.ckpt`)).catch(() => null);
      bytes += st?.size ?? 0;
    }
    return { bytes, count: all.length };
  }
}
