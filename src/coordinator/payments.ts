/**
 * Paying for inference: a requester's spendable balance is its escrow deposit on chain, minus what it announced
 * to withdraw, minus usage metered here but not yet charged on chain, minus requests in flight. A request holds
 * its worst case (prompt + max_tokens) before anything runs — not enough: 402, nothing runs, nothing is charged —
 * and on success records its actual tokens; a failed request releases its hold and costs nothing. Metered usage
 * is charged on chain per (requester, model) into the model's revenue vault, where each share holder's
 * withdrawable amount rises by its pro-rata part.
 */
import { keccak256, toHex, type Address } from 'viem';
import type { ChainLink } from './chain-link.ts';
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

export class Payments {
  private readonly store: Store;
  private readonly chain: ChainLink | null;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly held = new Map<Address, bigint>();

  constructor(o: { store: Store; chain: ChainLink | null; log: Logger; now: () => number }) {
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

  /**
   * Charges every uncharged usage on chain, one transaction per (requester, model); rows are marked with the
   * transaction only after it succeeded, so a failure is retried next time and nothing is charged twice.
   */
  async chargeUsage(): Promise<number> {
    if (!this.chain) return 0;
    const groups = this.db
      .prepare(
        'SELECT payer, model_id, GROUP_CONCAT(id) AS ids, GROUP_CONCAT(cost_wei) AS costs FROM usage WHERE ' +
          'charge_tx IS NULL GROUP BY payer, model_id',
      )
      .all() as Row[];
    let charged = 0;
    for (const g of groups) {
      const ids = String(g.ids).split(',').map(Number);
      const total = String(g.costs)
        .split(',')
        .reduce((a, c) => a + BigInt(c), 0n);
      const payer = String(g.payer) as Address;
      const modelId = String(g.model_id);
      try {
        const tag = keccak256(toHex(`${modelId}:${ids.join(',')}`));
        const tx = total > 0n ? await this.chain.charge(payer, modelId, total, tag) : 'free';
        const mark = this.db.prepare('UPDATE usage SET charge_tx = ?, charged_at = ? WHERE id = ?');
        this.store.transaction(() => ids.forEach((id) => mark.run(tx, this.now(), id)));
        charged += ids.length;
        this.log('info', `charged ${total} wei of ${payer} for ${ids.length} request(s) to ${modelId} (${tx})`);
      } catch (e) {
        this.log(
          'error',
          `charging ${payer} for ${modelId} failed, will retry: ${(e as Error).message.split('\n')[0]}`,
        );
      }
    }
    return charged;
  }
}
