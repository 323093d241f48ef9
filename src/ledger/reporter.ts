/**
 * A worker's receipts on their way to the coordinator: each unit of work becomes a receipt, signed with the
 * peer key and posted in batches every few seconds. A coordinator that is down costs nothing but delay (the
 * queue is kept, bounded); receipts it refuses are logged with its reason and not resent.
 */
import type { PrivateKey } from '@libp2p/interface';
import type { WorkContext, WorkDone } from '../train/work.ts';
import { receiptFor } from './flops.ts';
import { MAX_BODY_BYTES, MAX_RECEIPTS_PER_POST } from '../wire/index.ts';
import { type SignedReceipt, signReceipt, type WorkReceipt } from './receipt.ts';

export interface ReceiptReporterOptions {
  key: PrivateKey;
  peerId: string;
  /** Coordinator base URL ('' for same-origin in a tab). */
  coordinatorUrl: string;
  log?: (line: string) => void;
  /** Oldest receipts are dropped beyond this many unsent (default 8192). */
  maxQueued?: number;
  fetch?: typeof fetch;
}

/**
 * A request's body stays under this share of the coordinator's limit (a signed receipt is ~0.5 KB of JSON, so a
 * full count of them would not fit: sized by bytes, not by count).
 */
const BODY_BUDGET = Math.floor(MAX_BODY_BYTES * 0.9);

export class ReceiptReporter {
  readonly stats = { queued: 0, accepted: 0, rejected: 0, dropped: 0 };
  private readonly o: ReceiptReporterOptions;
  private queue: WorkReceipt[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private flushing: Promise<void> | null = null;

  constructor(opts: ReceiptReporterOptions) {
    this.o = opts;
  }

  add(w: WorkDone, c: WorkContext): void {
    this.queue.push(receiptFor(w, { ...c, peerId: this.o.peerId }));
    this.stats.queued++;
    const over = this.queue.length - (this.o.maxQueued ?? 8192);
    if (over > 0) {
      this.queue.splice(0, over);
      this.stats.dropped += over;
    }
  }

  /** Signs and posts everything queued (one flush at a time; concurrent callers share it). */
  flush(): Promise<void> {
    this.flushing ??= this.send().finally(() => (this.flushing = null));
    return this.flushing;
  }

  /**
   * Posts the queue front to back, one model's receipts per request, each request under the body budget. A
   * receipt leaves the queue only once the coordinator has answered for it (accepted or refused with a reason);
   * an unreachable or failing coordinator keeps it for the next flush.
   */
  private async send(): Promise<void> {
    while (this.queue.length > 0) {
      const model = this.queue[0].model;
      let n = 0;
      while (n < this.queue.length && n < MAX_RECEIPTS_PER_POST && this.queue[n].model === model) n++;
      const front = this.queue.slice(0, n);
      const signed = await Promise.all(front.map((r) => signReceipt(this.o.key, r)));
      let done = 0;
      for (const body of packBodies(signed)) {
        if ((await this.post(model, body)) === 'later') return;
        // By identity, not position: `add` may have dropped the oldest receipts while this request was out.
        const answered = new Set(front.slice(done, done + body.count));
        this.queue = this.queue.filter((r) => !answered.has(r));
        done += body.count;
      }
    }
  }

  /** One request; 'later' when the coordinator could not take it now (the receipts stay queued). */
  private async post(model: string, body: PackedBody): Promise<'done' | 'later'> {
    const f = this.o.fetch ?? fetch;
    let res: Response;
    try {
      res = await f(`${this.o.coordinatorUrl}/api/models/${encodeURIComponent(model)}/receipts`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: body.json,
      });
    } catch (e) {
      this.o.log?.(`receipts: coordinator unreachable (${(e as Error).message}); ${this.queue.length} kept for later`);
      return 'later';
    }
    if (res.status >= 500) {
      this.o.log?.(`receipts: coordinator answered ${res.status}; ${this.queue.length} kept for later`);
      return 'later';
    }
    const answer = (await res.json().catch(() => ({}))) as {
      accepted?: number;
      rejected?: Array<{ reason: string }>;
      error?: string;
    };
    if (!res.ok) {
      this.stats.rejected += body.count;
      this.o.log?.(`receipts: ${body.count} refused (${res.status}): ${answer.error ?? 'no reason given'}`);
    } else {
      this.stats.accepted += answer.accepted ?? 0;
      this.stats.rejected += answer.rejected?.length ?? 0;
      for (const r of answer.rejected?.slice(0, 3) ?? []) this.o.log?.(`receipt refused: ${r.reason}`);
    }
    return 'done';
  }

  start(everyMs = 2000): void {
    this.timer ??= setInterval(() => void this.flush(), everyMs);
  }

  /** Stops the timer and sends what is left. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
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
