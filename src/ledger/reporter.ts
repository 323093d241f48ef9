/**
 * A worker's receipts on their way to the coordinator: each unit of work becomes a receipt, signed with the
 * peer key and posted in batches every few seconds. A coordinator that is down costs nothing but delay (the
 * queue is kept, bounded); receipts it refuses are logged with its reason and not resent.
 */
import type { PrivateKey } from '@libp2p/interface';
import type { WorkContext, WorkDone } from '../train/work.ts';
import { receiptFor } from './flops.ts';
import { signReceipt, type WorkReceipt } from './receipt.ts';

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

/** Receipts per request (the coordinator accepts up to 512). */
const BATCH = 256;

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

  private async send(): Promise<void> {
    const f = this.o.fetch ?? fetch;
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, BATCH);
      const byModel = new Map<string, WorkReceipt[]>();
      for (const r of batch) byModel.set(r.model, [...(byModel.get(r.model) ?? []), r]);
      for (const [model, rs] of byModel) {
        const receipts = await Promise.all(rs.map((r) => signReceipt(this.o.key, r)));
        let res: Response;
        try {
          res = await f(`${this.o.coordinatorUrl}/api/models/${encodeURIComponent(model)}/receipts`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ receipts }),
          });
        } catch (e) {
          this.o.log?.(
            `receipts: coordinator unreachable (${(e as Error).message}); ${this.queue.length} kept for later`,
          );
          return;
        }
        if (res.status >= 500) {
          this.o.log?.(`receipts: coordinator answered ${res.status}; ${this.queue.length} kept for later`);
          return;
        }
        const body = (await res.json().catch(() => ({}))) as {
          accepted?: number;
          rejected?: Array<{ reason: string }>;
          error?: string;
        };
        if (!res.ok) {
          this.stats.rejected += rs.length;
          this.o.log?.(`receipts: ${rs.length} refused (${res.status}): ${body.error ?? 'no reason given'}`);
        } else {
          this.stats.accepted += body.accepted ?? 0;
          this.stats.rejected += body.rejected?.length ?? 0;
          for (const r of body.rejected?.slice(0, 3) ?? []) this.o.log?.(`receipt refused: ${r.reason}`);
        }
      }
      this.queue.splice(0, batch.length);
    }
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
