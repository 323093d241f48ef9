/**
 * Where a worker's receipts wait until the coordinator has answered for them: a receipt is written here before
 * the reporter counts it as queued and removed only once the coordinator acknowledged it (stored, already
 * stored, or refused with a reason), so a killed process or a closed tab loses none and the next start sends
 * them. Implementations: MemoryOutbox (nothing durable: tests, callers without storage), FileOutbox
 * (outbox-file.ts, Node) and the tab's IndexedDB one (src/app/volunteer/receipt-outbox.ts).
 */
import type { WorkReceipt } from './receipt.ts';

export interface OutboxEntry {
  /** Assigned by the outbox, increasing in append order: what `remove` names. */
  id: number;
  receipt: WorkReceipt;
}

export interface Outbox {
  /** What the last process left unacknowledged, oldest first (read once, at start). */
  load(): Promise<OutboxEntry[]>;
  /** Resolves once the receipts are on durable storage, with their entries in order. */
  append(receipts: WorkReceipt[]): Promise<OutboxEntry[]>;
  /** Forgets acknowledged (or dropped) entries; ids not held are ignored. */
  remove(ids: number[]): Promise<void>;
  close?(): Promise<void>;
}

/** An outbox that keeps nothing across restarts. */
export class MemoryOutbox implements Outbox {
  private next = 1;
  private readonly held = new Map<number, WorkReceipt>();

  async load(): Promise<OutboxEntry[]> {
    return [...this.held].map(([id, receipt]) => ({ id, receipt }));
  }

  async append(receipts: WorkReceipt[]): Promise<OutboxEntry[]> {
    return receipts.map((receipt) => {
      const id = this.next++;
      this.held.set(id, receipt);
      return { id, receipt };
    });
  }

  async remove(ids: number[]): Promise<void> {
    for (const id of ids) this.held.delete(id);
  }
}
