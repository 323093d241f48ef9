/**
 * A tab's receipt outbox (outbox.ts) in IndexedDB: one object store of receipts under increasing keys. An append
 * is one transaction with strict durability (resolved once the browser has flushed it), so the receipts of a
 * closed or crashed tab are there when the volunteer opens the page again and are sent then. A transaction is
 * atomic, so there is no torn write; a record that is not a receipt (written by something else) is skipped with
 * a log line and deleted. Two tabs of one origin share the store: both may send a receipt, and the coordinator
 * answers the second "duplicate" (credited once). Browser globals only (indexedDB).
 */
import type { Outbox, OutboxEntry } from './outbox.ts';
import type { WorkReceipt } from './receipt.ts';

export const RECEIPT_OUTBOX_DB = 'tessera-receipts';
const STORE = 'outbox';

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

export class IndexedDbOutbox implements Outbox {
  private db: Promise<IDBDatabase> | null = null;
  private readonly name: string;
  private readonly log: (line: string) => void;

  constructor(log: (line: string) => void = () => {}, name = RECEIPT_OUTBOX_DB) {
    this.log = log;
    this.name = name;
  }

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(this.name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { autoIncrement: true });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error(`cannot open IndexedDB ${this.name}`));
      req.onblocked = () => reject(new Error(`IndexedDB ${this.name} is blocked by another tab's older version`));
    }).catch((e: unknown) => {
      // Not cached: the next call tries again (storage may come back, the other tab may close).
      this.db = null;
      throw e;
    });
    return this.db;
  }

  /** Strict durability where the browser supports the option (Chromium, Firefox): complete means on disk. */
  private async tx(mode: IDBTransactionMode): Promise<IDBTransaction> {
    const db = await this.open();
    return db.transaction(STORE, mode, { durability: 'strict' });
  }

  async load(): Promise<OutboxEntry[]> {
    const tx = await this.tx('readwrite');
    const store = tx.objectStore(STORE);
    const out: OutboxEntry[] = [];
    const cursor = store.openCursor();
    cursor.onsuccess = () => {
      const c = cursor.result;
      if (!c) return;
      const v = c.value as Partial<WorkReceipt> | null;
      if (typeof c.key === 'number' && v !== null && typeof v === 'object' && typeof v.model === 'string') {
        out.push({ id: c.key, receipt: v as WorkReceipt });
      } else {
        this.log(`receipt outbox: skipped and deleted a record that is not a receipt (key ${String(c.key)})`);
        c.delete();
      }
      c.continue();
    };
    await done(tx);
    return out;
  }

  async append(receipts: WorkReceipt[]): Promise<OutboxEntry[]> {
    if (receipts.length === 0) return [];
    const tx = await this.tx('readwrite');
    const store = tx.objectStore(STORE);
    const out: OutboxEntry[] = receipts.map((receipt) => ({ id: 0, receipt }));
    receipts.forEach((r, i) => {
      const req = store.add(r);
      req.onsuccess = () => (out[i].id = req.result as number);
    });
    await done(tx);
    return out;
  }

  async remove(ids: number[]): Promise<void> {
    const mine = ids.filter((id) => id > 0);
    if (mine.length === 0) return;
    const tx = await this.tx('readwrite');
    const store = tx.objectStore(STORE);
    for (const id of mine) store.delete(id);
    await done(tx);
  }

  async close(): Promise<void> {
    const db = await this.db?.catch(() => null);
    db?.close();
    this.db = null;
  }
}
