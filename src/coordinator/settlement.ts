/**
 * Closing an epoch: every receipt not yet settled, up to the step before the last one recorded (so both
 * neighbours of a unit have had time to receipt it), is judged (src/ledger/verdict.ts); caught peers get a
 * strike (banned from assignment after `banAfter`); verified credits per peer are stored; cumulative shares per
 * wallet over all settled epochs become a StandardMerkleTree whose root is posted on chain by the settlement
 * key. The leaves, verdicts, audits and bindings are kept and published with the receipts, so anyone can
 * recompute the root (npm run verify-epoch).
 *
 * The database part is one transaction; posting is after it and retried until it succeeds, so a chain that is
 * down loses nothing and never posts a root the database does not hold.
 */
import { judgeEpoch, sortReceipts } from '../ledger/verdict.ts';
import { cumulativeShares, shareTree } from '../ledger/shares.ts';
import { HttpError } from './errors.ts';
import type { EpochRow, LedgerStore } from './ledger-store.ts';
import { rebalance } from './placement.ts';
import type { Store } from './store.ts';
import type { Logger } from './types.ts';

/** What settlement needs of a chain: post a root for a model's epoch. */
export interface RootPoster {
  postRoot(modelId: string, epoch: number, root: `0x${string}`): Promise<{ txHash: string; claimableAt: number }>;
}

export interface SettlementOptions {
  store: Store;
  ledger: LedgerStore;
  now: () => number;
  log: Logger;
  poster: RootPoster | null;
  /** Strikes (epochs caught) before a peer is dropped from assignment (default 2). */
  banAfter?: number;
}

export class Settlement {
  private readonly o: SettlementOptions;
  private timer: ReturnType<typeof setInterval> | null = null;
  private running: Promise<unknown> = Promise.resolve();

  constructor(opts: SettlementOptions) {
    this.o = opts;
  }

  /** Closes the model's next epoch (`expected`, when given, must be that epoch's number) and posts its root. */
  async close(modelId: string, expected?: number): Promise<EpochRow> {
    const run = this.running.then(() => this.closeNow(modelId, expected));
    this.running = run.catch(() => {});
    return run;
  }

  private async closeNow(modelId: string, expected?: number): Promise<EpochRow> {
    const { store, ledger, log } = this.o;
    const model = store.getModel(modelId);
    if (!model) throw new HttpError('notFound', `unknown model ${JSON.stringify(modelId.slice(0, 80))}`);
    const at = this.o.now();
    const row = store.transaction(() => {
      const last = ledger.lastEpoch(modelId);
      const epoch = (last?.epoch ?? 0) + 1;
      if (expected !== undefined && expected !== epoch)
        throw new HttpError('conflict', `unknown epoch ${expected}: the next epoch of ${modelId} to close is ${epoch}`);
      const throughStep = ledger.lastDoneStep(modelId) - 1;
      if (throughStep <= (last?.throughStep ?? -1))
        throw new HttpError(
          'conflict',
          `nothing to settle for ${modelId}: no step finished since epoch ${last?.epoch ?? 0} (through step ` +
            `${last?.throughStep ?? -1})`,
        );
      const receipts = sortReceipts(ledger.unsettledReceipts(modelId, throughStep));
      const judged = judgeEpoch(receipts, model.spec.layout.length);
      for (const v of judged.verdicts) {
        ledger.insertCredit(modelId, epoch, v.peerId, BigInt(v.credited), v.caught);
        if (v.caught) {
          const rep = ledger.strike(
            v.peerId,
            `caught in epoch ${epoch} of ${modelId}: ${v.failed} audit(s) failed`,
            this.o.banAfter ?? 2,
            at,
          );
          store.logEvent(
            'caught',
            { modelId, epoch, peerId: v.peerId, failed: v.failed, strikes: rep.strikes, banned: rep.banned },
            at,
          );
          log(
            'warn',
            `peer ${v.peerId} caught in epoch ${epoch} of ${modelId}: receipts void, strike ` +
              `${rep.strikes}${rep.banned ? ', banned' : ''}`,
          );
        }
      }
      const credits = ledger.creditsByEpoch(modelId, epoch);
      const all = ledger.allBindings();
      const earners = new Set(credits.flatMap((c) => [...c.keys()]));
      const bindings = [...earners]
        .filter((p) => all.has(p))
        .sort()
        .map((p) => ledger.getBinding(p)!);
      const leaves = cumulativeShares(credits, new Map(bindings.map((b) => [b.peerId, b.wallet])));
      const root = leaves.length > 0 ? shareTree(leaves).root : null;
      ledger.insertEpoch({
        modelId,
        epoch,
        closedAt: at,
        throughStep,
        root,
        leaves,
        verdicts: judged.verdicts,
        audits: judged.audits,
        bindings,
      });
      ledger.assignEpoch(modelId, epoch, throughStep);
      store.logEvent(
        'epoch',
        { modelId, epoch, throughStep, receipts: receipts.length, wallets: leaves.length, root },
        at,
      );
      if (judged.verdicts.some((v) => v.caught)) rebalance(store, at, `audits of epoch ${epoch}`, log);
      return ledger.getEpoch(modelId, epoch)!;
    });
    log(
      'info',
      `epoch ${row.epoch} of ${modelId} settled through step ${row.throughStep}: ${row.leaves.length} ` +
        `wallet(s), root ${row.root ?? '(none: no bound wallet earned)'}`,
    );
    if (row.root) await this.post(row);
    return ledger.getEpoch(modelId, row.epoch)!;
  }

  private async post(e: EpochRow): Promise<void> {
    const { poster, ledger, log } = this.o;
    if (!poster || !e.root) return;
    try {
      const { txHash, claimableAt } = await poster.postRoot(e.modelId, e.epoch, e.root as `0x${string}`);
      ledger.markPosted(e.modelId, e.epoch, txHash, this.o.now(), claimableAt);
      log(
        'info',
        `epoch ${e.epoch} of ${e.modelId}: root posted (${txHash}), claimable at ` +
          `${new Date(claimableAt * 1000).toISOString()}`,
      );
    } catch (err) {
      ledger.markChainError(e.modelId, e.epoch, (err as Error).message);
      log(
        'error',
        `epoch ${e.epoch} of ${e.modelId}: posting the root failed, will retry: ` +
          `${(err as Error).message.split('\n')[0]}`,
      );
    }
  }

  /** Posts roots that did not reach the chain yet, oldest first (a later root waits for earlier ones). */
  async postPending(): Promise<void> {
    for (const e of this.o.ledger.unposted()) {
      await this.post(e);
      if (!this.o.ledger.getEpoch(e.modelId, e.epoch)?.txHash) return;
    }
  }

  /** Every `everyMs`: retries unposted roots, then closes an epoch for each model with newly finished steps. */
  start(everyMs: number): void {
    this.timer ??= setInterval(() => {
      this.running = this.running
        .then(async () => {
          await this.postPending();
          for (const m of this.o.store.listModels()) {
            const last = this.o.ledger.lastEpoch(m.id);
            if (this.o.ledger.lastDoneStep(m.id) - 1 > (last?.throughStep ?? -1))
              await this.closeNow(m.id).catch((e) =>
                this.o.log('warn', `timer settlement of ${m.id}: ${(e as Error).message}`),
              );
          }
        })
        .catch((e) => this.o.log('error', `settlement timer: ${(e as Error).message}`));
    }, everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Resolves when the settlement in progress (if any) is done. */
  idle(): Promise<unknown> {
    return this.running;
  }
}
