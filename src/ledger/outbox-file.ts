/**
 * The Node worker's receipt outbox: one append-only JSONL file in its state folder. A line is either a receipt
 * (`{"id":7,"r":{…}}`) or the ids the coordinator acknowledged (`{"ack":[7,8]}`); every write is fsynced before
 * it resolves, so what `append` promised survives SIGKILL and a power cut. Reading skips (and logs) a line torn by
 * a crash mid-write or otherwise unreadable instead of failing; the file is then rewritten without it (temp file,
 * fsync, rename), as it is whenever acknowledgements outweigh what is still held, so it stays small.
 * One process per file: the worker's state folder is its own.
 */
import { mkdirSync } from 'node:fs';
import { type FileHandle, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Outbox, OutboxEntry } from './outbox.ts';
import type { WorkReceipt } from './receipt.ts';

/** Rewrite once this many ack'ed entries are in the file and they outnumber the live ones. */
const COMPACT_AFTER = 512;

export class FileOutbox implements Outbox {
  readonly path: string;
  private readonly log: (line: string) => void;
  private readonly held = new Map<number, WorkReceipt>();
  private next = 1;
  /** Entries written to the file and acknowledged since it was last rewritten. */
  private dead = 0;
  private fd: FileHandle | null = null;
  /** Writes one at a time, in call order. */
  private chain: Promise<unknown> = Promise.resolve();
  private loaded = false;

  constructor(path: string, log: (line: string) => void = () => {}) {
    this.path = path;
    this.log = log;
  }

  load(): Promise<OutboxEntry[]> {
    return this.serial(async () => {
      if (!this.loaded) await this.read();
      return [...this.held].map(([id, receipt]) => ({ id, receipt }));
    });
  }

  append(receipts: WorkReceipt[]): Promise<OutboxEntry[]> {
    return this.serial(async () => {
      if (!this.loaded) await this.read();
      const entries = receipts.map((receipt) => ({ id: this.next++, receipt }));
      if (entries.length === 0) return entries;
      await this.write(entries.map((e) => `${JSON.stringify({ id: e.id, r: e.receipt })}\n`).join(''));
      for (const e of entries) this.held.set(e.id, e.receipt);
      return entries;
    });
  }

  remove(ids: number[]): Promise<void> {
    return this.serial(async () => {
      if (!this.loaded) await this.read();
      const gone = ids.filter((id) => this.held.has(id));
      if (gone.length === 0) return;
      await this.write(`${JSON.stringify({ ack: gone })}\n`);
      for (const id of gone) this.held.delete(id);
      this.dead += gone.length;
      if (this.dead >= COMPACT_AFTER && this.dead > this.held.size) await this.rewrite();
    });
  }

  close(): Promise<void> {
    return this.serial(async () => {
      await this.fd?.close();
      this.fd = null;
    });
  }

  /** Entries held now (for tests and logs). */
  get size(): number {
    return this.held.size;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const out = this.chain.then(fn);
    this.chain = out.catch(() => {});
    return out;
  }

  private async write(text: string): Promise<void> {
    this.fd ??= await open(this.path, 'a');
    await this.fd.write(text);
    await this.fd.sync();
  }

  private async read(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true });
    let text = '';
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const lines = text.split('\n');
    // Text after the last newline is a line whose write never finished (its append never resolved).
    const torn = lines.pop() ?? '';
    let skipped = 0;
    if (torn !== '') {
      this.log(`receipt outbox ${this.path}: skipped a torn last line (${torn.length} bytes, a write cut short)`);
      skipped++;
    }
    let entries = 0;
    lines.forEach((line, i) => {
      if (line === '') return;
      const parsed = parseLine(line);
      if (!parsed) {
        this.log(`receipt outbox ${this.path}: skipped unreadable line ${i + 1}: ${line.slice(0, 80)}`);
        skipped++;
      } else if ('ack' in parsed) {
        for (const id of parsed.ack) this.held.delete(id);
      } else {
        entries++;
        this.held.set(parsed.id, parsed.r);
        this.next = Math.max(this.next, parsed.id + 1);
      }
    });
    this.dead = entries - this.held.size;
    this.loaded = true;
    // Appending after a torn line would glue the next entry to it: start from a clean file.
    if (skipped > 0 || this.dead > 0) await this.rewrite();
  }

  /** Replaces the file with the entries held, atomically: a crash leaves the old file or the new, never half. */
  private async rewrite(): Promise<void> {
    await this.fd?.close();
    this.fd = null;
    const tmp = `${this.path}.tmp`;
    const out = await open(tmp, 'w');
    try {
      const text = [...this.held].map(([id, r]) => `${JSON.stringify({ id, r })}\n`).join('');
      await out.write(text);
      await out.sync();
    } finally {
      await out.close();
    }
    await rename(tmp, this.path);
    // The rename itself is durable once the folder is synced.
    const dir = await open(dirname(this.path), 'r');
    await dir.sync().finally(() => dir.close());
    this.dead = 0;
  }
}

function parseLine(line: string): { id: number; r: WorkReceipt } | { ack: number[] } | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (Array.isArray(o.ack) && o.ack.every((x) => Number.isSafeInteger(x))) return { ack: o.ack as number[] };
  const r = o.r as Record<string, unknown> | undefined;
  if (Number.isSafeInteger(o.id) && typeof r === 'object' && r !== null && typeof r.model === 'string')
    return { id: o.id as number, r: r as unknown as WorkReceipt };
  return null;
}
