/**
 * Paying for inference: a requester's spendable balance is its escrow deposit on chain, minus what it announced
 * to withdraw, minus usage metered here but not yet charged on chain, minus requests in flight. A request holds
 * its worst case (prompt + max_tokens) before anything runs — not enough: 402, nothing runs, nothing is charged —
 * and on success records its actual tokens; a failed request releases its hold and costs nothing. Metered usage
 * is charged on chain per (requester, model) into the model's revenue vault, where each share holder's
 * withdrawable amount rises by its pro-rata part.
 *
 * Exactly once: uncharged usage is first grouped into a batch (one per requester and model) whose identifier,
 * a hash of its request ids, is written to the rows before anything is sent; the escrow charges an identifier at
 * most once (AlreadyCharged). Before every send the chain is read: a batch the escrow already charged (mined,
 * then a crash before the rows were marked) is marked, never sent again. On start `reconcile()` does the same for
 * every batch in flight and requeues charges whose transaction the chain does not know.
 */
import { keccak256, toHex, type Address } from 'viem';
import { HttpError } from './errors.ts';
import type { Store } from './store.ts';
import type { Logger, ModelRecord } from './types.ts';

type Row = Record<string, unknown>;

/** Wei per token of a model: its price is ETH per 1,000 tokens (to the gwei). */
export function weiPerKiloToken(m: ModelRecord): bigint {
  return BigInt(Math.round(m.spec.pricePer1kTokens * 1e9)) * 10n ** 9n;
}

/** The cost of `tokens` tokens, rounded up to the wei. */
export function costOf(m: ModelRecord, tokens: number): bigint {
  return (weiPerKiloToken(m) * BigInt(tokens) + 999n) / 1000n;
}

export interface Hold {
  payer: Address;
  amount: bigint;
}

export interface UsageRecord {
  requestId: string;
  payer: Address;
  modelId: string;
  promptTokens: number;
  completionTokens: number;
  cost: bigint;
}

/** What payments need of a chain (ChainLink): the escrow's balance, charges, and whether a batch was charged. */
export interface UsageCharger {
  escrowAvailable(payer: Address): Promise<bigint>;
  charge(payer: Address, modelId: string, amount: bigint, usage: `0x${string}`): Promise<string>;
  usageCharged(payer: Address, usage: `0x${string}`): Promise<{ charged: boolean; txHash: string | null }>;
  txKnown(txHash: string): Promise<boolean>;
}

/** What reconcile() found and did. */
export interface ChargeReconciliation {
  /** Batches the escrow had charged but the database had not marked (mined, then a crash): now marked. */
  recorded: number;
  /** Charges whose transaction the chain does not know: unmarked, charged again under the same identifier. */
  requeued: number;
  /** Batches still to charge. */
  pending: number;
}

export class Payments {
  private readonly store: Store;
  private readonly chain: UsageCharger | null;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly held = new Map<Address, bigint>();
  /** Charging and reconciling run one at a time (the timer and a caller must not send the same batch twice). */
  private charging: Promise<unknown> = Promise.resolve();

  constructor(o: { store: Store; chain: UsageCharger | null; log: Logger; now: () => number }) {
    this.store = o.store;
    this.chain = o.chain;
    this.log = o.log;
    this.now = o.now;
  }

  private get db() {
    return this.store.connection;
  }

  /** Refuses a nonce not above the requester's last one (a replayed or reordered request). */
  useNonce(payer: Address, nonce: bigint): void {
    this.store.transaction(() => {
      const r = this.db.prepare('SELECT last FROM request_nonces WHERE payer = ?').get(payer) as Row | undefined;
      if (r && nonce <= BigInt(String(r.last)))
        throw new HttpError(
          'unauthorized',
          `nonce ${nonce} is not above ${r.last}, the last one ${payer} used (replayed request?)`,
        );
      this.db
        .prepare(
          'INSERT INTO request_nonces (payer, last) VALUES (?, ?) ON CONFLICT (payer) DO UPDATE SET last = ' +
            'excluded.last',
        )
        .run(payer, nonce.toString());
    });
  }

  private uncharged(payer: Address): bigint {
    const rows = this.db
      .prepare('SELECT cost_wei FROM usage WHERE payer = ? AND charge_tx IS NULL')
      .all(payer) as Row[];
    return rows.reduce((a, r) => a + BigInt(String(r.cost_wei)), 0n);
  }

  /** What the requester can still spend. */
  async available(
    payer: Address,
  ): Promise<{ deposit: bigint; uncharged: bigint; inFlight: bigint; available: bigint }> {
    if (!this.chain) throw new HttpError('unavailable', 'no chain is configured: paid inference needs the escrow');
    let deposit: bigint;
    try {
      deposit = await this.chain.escrowAvailable(payer);
    } catch (e) {
      throw new HttpError('unavailable', `reading the escrow failed: ${(e as Error).message.split('\n')[0]}`);
    }
    const uncharged = this.uncharged(payer);
    const inFlight = this.held.get(payer) ?? 0n;
    const left = deposit - uncharged - inFlight;
    return { deposit, uncharged, inFlight, available: left > 0n ? left : 0n };
  }

  /** Reserves `amount` for a request, or 402 when the deposit does not cover it. */
  async hold(payer: Address, amount: bigint): Promise<Hold> {
    const a = await this.available(payer);
    if (a.available < amount) {
      throw new HttpError(
        'paymentRequired',
        `this request may cost up to ${amount} wei; ${payer} has ${a.available} available (deposit ` +
          `${a.deposit}, metered ${a.uncharged}, in flight ${a.inFlight}): deposit to the escrow`,
      );
    }
    this.held.set(payer, (this.held.get(payer) ?? 0n) + amount);
    return { payer, amount };
  }

  release(h: Hold): void {
    const left = (this.held.get(h.payer) ?? 0n) - h.amount;
    if (left > 0n) this.held.set(h.payer, left);
    else this.held.delete(h.payer);
  }

  /** Records a served request (its cost must fit its hold) and releases the hold. */
  commit(h: Hold, u: UsageRecord): void {
    if (u.cost > h.amount) throw new Error(`usage ${u.cost} exceeds the hold ${h.amount}`);
    this.db
      .prepare(
        'INSERT INTO usage (request_id, payer, model_id, prompt_tokens, completion_tokens, cost_wei, at) ' +
          'VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(u.requestId, u.payer, u.modelId, u.promptTokens, u.completionTokens, u.cost.toString(), this.now());
    this.release(h);
  }

  /** Usage of a requester (newest first). */
  usageOf(payer: Address, limit = 100) {
    return (
      this.db.prepare('SELECT * FROM usage WHERE payer = ? ORDER BY id DESC LIMIT ?').all(payer, limit) as Row[]
    ).map((r) => ({
      requestId: String(r.request_id),
      modelId: String(r.model_id),
      promptTokens: Number(r.prompt_tokens),
      completionTokens: Number(r.completion_tokens),
      costWei: String(r.cost_wei),
      at: Number(r.at),
      chargeTx: r.charge_tx === null ? null : String(r.charge_tx),
    }));
  }

  /** Resolves when the charge or reconcile in progress (if any) is done. */
  idle(): Promise<unknown> {
    return this.charging;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.charging.then(fn);
    this.charging = run.catch(() => {});
    return run;
  }

  /**
   * Charges every uncharged usage on chain, one transaction per batch (requester, model). Rows get their batch
   * before the send and their transaction after it is mined; a failure is retried next time under the same
   * identifier, and the escrow refuses an identifier twice, so nothing is charged twice. Returns the rows marked.
   */
  chargeUsage(): Promise<number> {
    return this.serial(() => this.chargeNow());
  }

  /** Groups uncharged rows without a batch into batches, one per (payer, model); committed before any send. */
  private batchNew(): void {
    this.store.transaction(() => {
      const groups = this.db
        .prepare(
          'SELECT payer, model_id, GROUP_CONCAT(id) AS ids, GROUP_CONCAT(request_id) AS rids FROM usage WHERE ' +
            'charge_tx IS NULL AND charge_batch IS NULL GROUP BY payer, model_id',
        )
        .all() as Row[];
      const set = this.db.prepare('UPDATE usage SET charge_batch = ? WHERE id = ?');
      for (const g of groups) {
        // Request ids are random (openai.ts): the identifier is unique across databases sharing one escrow.
        const batch = keccak256(toHex(`tessera-usage:${g.model_id}:${String(g.rids)}`));
        for (const id of String(g.ids).split(',')) set.run(batch, Number(id));
      }
    });
  }

  /** Batches sent or to send and not marked yet, oldest first. */
  private pendingBatches(): Array<{ batch: `0x${string}`; payer: Address; modelId: string; total: bigint; n: number }> {
    const rows = this.db
      .prepare(
        'SELECT charge_batch, payer, model_id, GROUP_CONCAT(cost_wei) AS costs, COUNT(*) AS n, MIN(id) AS first ' +
          'FROM usage WHERE charge_tx IS NULL AND charge_batch IS NOT NULL GROUP BY charge_batch ORDER BY first',
      )
      .all() as Row[];
    return rows.map((r) => ({
      batch: String(r.charge_batch) as `0x${string}`,
      payer: String(r.payer) as Address,
      modelId: String(r.model_id),
      total: String(r.costs)
        .split(',')
        .reduce((a, c) => a + BigInt(c), 0n),
      n: Number(r.n),
    }));
  }

  private mark(batch: string, tx: string): number {
    return Number(
      this.db
        .prepare('UPDATE usage SET charge_tx = ?, charged_at = ? WHERE charge_batch = ? AND charge_tx IS NULL')
        .run(tx, this.now(), batch).changes,
    );
  }

  private async chargeNow(): Promise<number> {
    const chain = this.chain;
    if (!chain) return 0;
    this.batchNew();
    let charged = 0;
    for (const b of this.pendingBatches()) {
      try {
        if (b.total === 0n) {
          charged += this.mark(b.batch, 'free');
          continue;
        }
        const seen = await chain.usageCharged(b.payer, b.batch);
        if (seen.charged) {
          charged += this.mark(b.batch, seen.txHash ?? 'on-chain');
          this.log(
            'info',
            `usage batch ${b.batch} of ${b.payer} was already charged on chain (${seen.txHash}): marked, not resent`,
          );
          continue;
        }
        const tx = await chain.charge(b.payer, b.modelId, b.total, b.batch);
        charged += this.mark(b.batch, tx);
        this.log('info', `charged ${b.total} wei of ${b.payer} for ${b.n} request(s) to ${b.modelId} (${tx})`);
      } catch (e) {
        this.log(
          'error',
          `charging ${b.payer} for ${b.modelId} failed, will retry: ${(e as Error).message.split('\n')[0]}`,
        );
      }
    }
    return charged;
  }

  /**
   * Brings the usage table in line with the escrow (run on start, queued with charging): batches charged on chain
   * but not marked are marked; charges whose transaction the chain lost are unmarked to be charged again. Logs
   * what it did; a chain that does not answer is logged and left to chargeUsage, which reads it before each send.
   */
  reconcile(): Promise<ChargeReconciliation> {
    return this.serial(() => this.reconcileNow());
  }

  private async reconcileNow(): Promise<ChargeReconciliation> {
    const out: ChargeReconciliation = { recorded: 0, requeued: 0, pending: 0 };
    const chain = this.chain;
    if (!chain) return out;
    try {
      const sent = this.db
        .prepare("SELECT DISTINCT charge_tx FROM usage WHERE charge_tx LIKE '0x%' AND charge_batch IS NOT NULL")
        .all() as Row[];
      for (const r of sent) {
        const tx = String(r.charge_tx);
        if (await chain.txKnown(tx)) continue;
        this.db.prepare('UPDATE usage SET charge_tx = NULL, charged_at = NULL WHERE charge_tx = ?').run(tx);
        out.requeued++;
      }
      for (const b of this.pendingBatches()) {
        const seen = await chain.usageCharged(b.payer, b.batch);
        if (seen.charged) {
          this.mark(b.batch, seen.txHash ?? 'on-chain');
          out.recorded++;
        } else out.pending++;
      }
    } catch (e) {
      this.log('warn', `charge reconcile: the chain did not answer (${(e as Error).message.split('\n')[0]})`);
      return out;
    }
    this.log(
      'info',
      `usage charges reconciled with the escrow: ${out.recorded} batch(es) found charged and marked, ` +
        `${out.requeued} charge(s) lost by the chain requeued, ${out.pending} batch(es) to charge`,
    );
    return out;
  }
}
