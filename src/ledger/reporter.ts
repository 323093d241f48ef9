/**
 * A worker's receipts on their way to the coordinator: each unit of work becomes a receipt, written to an outbox
 * (outbox.ts: a file for a Node worker, IndexedDB in a tab), then signed with the peer key and posted in batches
 * every few seconds. A receipt leaves the outbox only once the coordinator has answered for it: stored, already
 * stored (a retry whose first answer was lost: the coordinator credits each receipt once), or refused with a
 * reason. An unreachable or failing coordinator (5xx, a full disk included) costs nothing but delay: the reporter
 * backs off and tries again, and a killed process or closed tab leaves the outbox to the next start.
 */
import type { PrivateKey } from '@libp2p/interface';
import type { WorkContext, WorkDone } from '../train/work.ts';
import { receiptFor } from './flops.ts';
import { MemoryOutbox, type Outbox, type OutboxEntry } from './outbox.ts';
import { MAX_BODY_BYTES, MAX_RECEIPTS_PER_POST } from '../wire/index.ts';
import { type SignedReceipt, signReceipt, type WorkReceipt } from './receipt.ts';

export interface ReceiptReporterOptions {
  key: PrivateKey;
  peerId: string;
  /** Coordinator base URL ('' for same-origin in a tab). */
  coordinatorUrl: string;
  log?: (line: string) => void;
  /**
   * Most receipts held unacknowledged (default 8192, ~3 MB of outbox): beyond it the oldest are dropped, logged
   * and counted in `stats.dropped` (after hours of outage; the oldest are the likeliest to be settled by now).
   */
  maxQueued?: number;
  /** Where receipts wait for their answer (default: memory, lost with the process). */
  outbox?: Outbox;
  /** Longest wait between tries while the coordinator does not answer (default 60 s). */
  maxBackoffMs?: number;
  fetch?: typeof fetch;
}

/**
 * A request's body stays under this share of the coordinator's limit (a signed receipt is ~0.5 KB of JSON, so a
 * full count of them would not fit: sized by bytes, not by count).
 */
const BODY_BUDGET = Math.floor(MAX_BODY_BYTES * 0.9);

/** Answers that mean "not now" rather than "no": the receipts stay for the next try. */
const RETRY_STATUS = new Set([408, 425, 429]);

export class ReceiptReporter {
  /**
   * queued: written to the outbox (or held in memory when it failed); restored: left by an earlier run;
   * duplicates: already stored by the coordinator (acknowledged, not credited again).
   */
  readonly stats = { queued: 0, restored: 0, accepted: 0, duplicates: 0, rejected: 0, dropped: 0 };
  /** Resolves once the outbox's earlier receipts are queued. */
  readonly ready: Promise<void>;
  private readonly o: ReceiptReporterOptions;
  private readonly outbox: Outbox;
  private queue: OutboxEntry[] = [];
  /** Added, not yet written to the outbox. */
  private pending: WorkReceipt[] = [];
  private persisting: Promise<void>;
  private timer: ReturnType<typeof setInterval> | null = null;
  private flushing: Promise<void> | null = null;
  private everyMs = 2000;
  private failures = 0;
  private retryAt = 0;
  private memoryOnly = 0;
  private droppedLogAt = -Infinity;

  constructor(opts: ReceiptReporterOptions) {
    this.o = opts;
    this.outbox = opts.outbox ?? new MemoryOutbox();
    this.ready = this.outbox.load().then(
      (earlier) => {
        if (earlier.length === 0) return;
        this.o.log?.(`receipts: ${earlier.length} left unacknowledged by an earlier run; sending them first`);
        this.queue.unshift(...earlier);
        this.stats.restored += earlier.length;
        this.trim();
      },
      (e) => this.o.log?.(`receipts: the outbox could not be read (${(e as Error).message}); starting empty`),
    );
    this.persisting = this.ready;
  }

  /** Queues a unit's receipt: it counts as queued once the outbox has it (`flush` waits for that). */
  add(w: WorkDone, c: WorkContext): void {
    this.pending.push(receiptFor(w, { ...c, peerId: this.o.peerId }));
    this.persisting = this.persisting.then(() => this.persist());
  }

  /** Writes what was added since the last write, in one outbox append (one fsync for a burst of units). */
  private async persist(): Promise<void> {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    let entries: OutboxEntry[];
    try {
      entries = await this.outbox.append(batch);
    } catch (e) {
      // Still worth sending from memory: only a crash before the answer would lose them.
      this.o.log?.(
        `receipts: the outbox could not store ${batch.length} (${(e as Error).message}); ` +
          'kept in memory only, lost if this process dies before they are sent',
      );
      entries = batch.map((receipt) => ({ id: -++this.memoryOnly, receipt }));
    }
    this.queue.push(...entries);
    this.stats.queued += entries.length;
    this.trim();
  }

  /** Drops the oldest receipts beyond `maxQueued`, from the outbox too. */
  private trim(): void {
    const max = this.o.maxQueued ?? 8192;
    const over = this.queue.length - max;
    if (over <= 0) return;
    const dropped = this.queue.splice(0, over);
    this.stats.dropped += over;
    if (Date.now() - this.droppedLogAt > 60_000) {
      this.droppedLogAt = Date.now();
      this.o.log?.(
        `receipts: over ${max} unacknowledged (coordinator unreachable?): dropping the oldest ` +
          `(${this.stats.dropped} so far)`,
      );
    }
    void this.forget(dropped);
  }

  private async forget(entries: OutboxEntry[]): Promise<void> {
    try {
      await this.outbox.remove(entries.map((e) => e.id));
    } catch (e) {
      // The next start sends them again; the coordinator answers "duplicate" and they go then.
      this.o.log?.(`receipts: the outbox could not forget ${entries.length} (${(e as Error).message})`);
    }
  }

  /** Signs and posts everything queued (one flush at a time; concurrent callers share it). */
  flush(): Promise<void> {
    this.flushing ??= this.persisting.then(() => this.send()).finally(() => (this.flushing = null));
    return this.flushing;
  }

  /** Receipts waiting for an answer, written or not. */
  get unacknowledged(): number {
    return this.queue.length + this.pending.length;
  }

  /**
   * Posts the queue front to back, one model's receipts per request, each request under the body budget. A
   * receipt leaves the queue (and the outbox) only once the coordinator has answered for it; an unreachable or
   * failing coordinator keeps it, and the next try waits longer (doubling up to `maxBackoffMs`, with jitter so a
   * swarm does not return all at once).
   */
  private async send(): Promise<void> {
    while (this.queue.length > 0) {
      const model = this.queue[0].receipt.model;
      let n = 0;
      while (n < this.queue.length && n < MAX_RECEIPTS_PER_POST && this.queue[n].receipt.model === model) n++;
      const front = this.queue.slice(0, n);
      const signed = await Promise.all(front.map((e) => signReceipt(this.o.key, e.receipt)));
      let done = 0;
      for (const body of packBodies(signed)) {
        if ((await this.post(model, body)) === 'later') {
          this.failures++;
          const cap = this.o.maxBackoffMs ?? 60_000;
          const wait = Math.min(cap, this.everyMs * 2 ** Math.min(this.failures - 1, 16));
          this.retryAt = Date.now() + wait * (0.5 + Math.random() / 2);
          return;
        }
        this.failures = 0;
        this.retryAt = 0;
        // By identity, not position: `trim` may have dropped the oldest receipts while this request was out.
        const answered = new Set(front.slice(done, done + body.count));
        this.queue = this.queue.filter((e) => !answered.has(e));
        await this.forget([...answered]);
        done += body.count;
      }
    }
  }

  /** One request; 'later' when the coordinator could not take it now (the receipts stay queued). */
  private async post(model: string, body: PackedBody): Promise<'done' | 'later'> {
    const f = this.o.fetch ?? fetch;
    const kept = () => `${this.unacknowledged} kept for later`;
    let res: Response;
    try {
      res = await f(`${this.o.coordinatorUrl}/api/models/${encodeURIComponent(model)}/receipts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: body.json,
      });
    } catch (e) {
      this.o.log?.(`receipts: coordinator unreachable (${(e as Error).message}); ${kept()}`);
      return 'later';
    }
    const answer = (await res.json().catch(() => ({}))) as {
      accepted?: number;
      rejected?: Array<{ reason: string; duplicate?: boolean }>;
      error?: string;
    };
    if (res.status >= 500 || RETRY_STATUS.has(res.status)) {
      this.o.log?.(`receipts: coordinator answered ${res.status} (${answer.error ?? 'no reason given'}); ${kept()}`);
      return 'later';
    }
    if (!res.ok) {
      this.stats.rejected += body.count;
      this.o.log?.(`receipts: ${body.count} refused (${res.status}): ${answer.error ?? 'no reason given'}`);
    } else {
      this.stats.accepted += answer.accepted ?? 0;
      const refused = answer.rejected?.filter((r) => !r.duplicate) ?? [];
      this.stats.duplicates += (answer.rejected?.length ?? 0) - refused.length;
      this.stats.rejected += refused.length;
      for (const r of refused.slice(0, 3)) this.o.log?.(`receipt refused: ${r.reason}`);
    }
    return 'done';
  }

  /** Flushes every `everyMs`, less often while the coordinator is not answering. */
  start(everyMs = 2000): void {
    this.everyMs = everyMs;
    this.timer ??= setInterval(() => {
      if (Date.now() >= this.retryAt) void this.flush();
    }, everyMs);
  }

  /** Stops the timer and tries once more to send what is left (the outbox keeps what is not answered). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
    await this.outbox.close?.();
  }
}

export interface PackedBody {
  /** `{"receipts":[…]}` */
  json: string;
  /** Receipts in it: the first `count` of those packed. */
  count: number;
}

/**
 * Splits signed receipts, in order, into request bodies of at most BODY_BUDGET bytes of UTF-8 JSON each. A single
 * receipt over the budget (malformed beyond repair) goes alone: the coordinator refuses it with a reason.
 */
export function packBodies(receipts: SignedReceipt[], budget = BODY_BUDGET): PackedBody[] {
  const out: PackedBody[] = [];
  const enc = new TextEncoder();
  let parts: string[] = [];
  let bytes = 0;
  const close = () => {
    if (parts.length > 0) out.push({ json: `{"receipts":[${parts.join(',')}]}`, count: parts.length });
    parts = [];
    bytes = 0;
  };
  for (const r of receipts) {
    const part = JSON.stringify(r);
    const size = enc.encode(part).byteLength + 1;
    if (parts.length > 0 && bytes + size + '{"receipts":[]}'.length > budget) close();
    parts.push(part);
    bytes += size;
  }
  close();
  return out;
}
