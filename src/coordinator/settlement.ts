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
 *
 * Exactly once: the epoch number is the root's identity on chain (the distributor takes each epoch once, in
 * increasing order). Before every send the chain is read, so a root that was mined but never recorded (a crash
 * between the two) is recorded, not sent again (a resend would revert EpochNotIncreasing and stick the epoch
 * at pending-chain). On start `reconcile()` does the same for every unposted epoch, and requeues posted epochs
 * whose transaction the chain does not know (a local node killed before it dumped its state).
 */
import { judgeEpoch, sortReceipts } from '../ledger/verdict.ts';
import { cumulativeShares, shareTree } from '../ledger/shares.ts';
import { HttpError } from './errors.ts';
import type { EpochRow, LedgerStore } from './ledger-store.ts';
import { rebalance } from './placement.ts';
import type { Store } from './store.ts';
import type { Logger } from './types.ts';

/** An epoch as the chain holds it. */
export interface RootOnChain {
  /** null: no root for this epoch on chain. */
  root: `0x${string}` | null;
  /** The distributor's latest epoch: an epoch at or below it without a root can never be posted. */
  latestEpoch: number;
  /** The transaction that posted the root, when its log was found. */
  txHash: string | null;
  claimableAt: number;
}

/** What settlement needs of a chain: post a root for a model's epoch, and read what is there. */
export interface RootPoster {
  postRoot(modelId: string, epoch: number, root: `0x${string}`): Promise<{ txHash: string; claimableAt: number }>;
  /** The model's epoch on chain; null when the model is not on chain yet (nothing was posted for it). */
  rootOnChain(modelId: string, epoch: number): Promise<RootOnChain | null>;
  /** Whether the chain knows the transaction (false: the chain lost it, e.g. a node restarted from an old state). */
  txKnown(txHash: string): Promise<boolean>;
}

/** What reconcile() found and did. */
export interface SettlementReconciliation {
  /** Roots found on chain that the database had not recorded (mined, then a crash): now recorded. */
  recorded: Array<{ modelId: string; epoch: number }>;
  /** Posted epochs whose transaction the chain does not know: unmarked, posted again in order. */
  requeued: Array<{ modelId: string; epoch: number }>;
  /** Epochs with a root still to post (the timer posts them). */
  unposted: number;
}

type PostOutcome = 'posted' | 'retry' | 'skip';

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

  /** `throughAtMost`: the timer's bound (steps finished too recently for their receipts to be in). */
  private async closeNow(modelId: string, expected?: number, throughAtMost = Infinity): Promise<EpochRow> {
    const { store, ledger, log } = this.o;
    const model = store.getModel(modelId);
    if (!model) throw new HttpError('notFound', `unknown model ${JSON.stringify(modelId.slice(0, 80))}`);
    const at = this.o.now();
    const row = store.transaction(() => {
      const last = ledger.lastEpoch(modelId);
      const epoch = (last?.epoch ?? 0) + 1;
      if (expected !== undefined && expected !== epoch)
        throw new HttpError('conflict', `unknown epoch ${expected}: the next epoch of ${modelId} to close is ${epoch}`);
      const throughStep = Math.min(ledger.lastDoneStep(modelId) - 1, throughAtMost);
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
    // Through the queue: an earlier epoch of this model still unposted must reach the chain first.
    if (row.root) await this.postPending(modelId);
    return ledger.getEpoch(modelId, row.epoch)!;
  }

  /**
   * Posts one root unless the chain already holds it. 'retry': not on chain yet (later epochs of the model wait);
   * 'skip': the chain can never take this epoch (it holds another root, or a later epoch): the error is recorded
   * and later epochs go on, since roots are cumulative and a later one supersedes it.
   */
  private async post(e: EpochRow): Promise<PostOutcome> {
    const { poster, ledger, log } = this.o;
    if (!poster || !e.root) return 'posted';
    const fail = (outcome: PostOutcome, message: string): PostOutcome => {
      ledger.markChainError(e.modelId, e.epoch, message);
      log(
        'error',
        `epoch ${e.epoch} of ${e.modelId}: posting the root failed${outcome === 'retry' ? ', will retry' : ''}: ` +
          message.split('\n')[0],
      );
      return outcome;
    };
    try {
      const seen = await poster.rootOnChain(e.modelId, e.epoch);
      if (seen?.root === e.root) {
        this.recordPosted(e, seen.txHash ?? 'on-chain', seen.claimableAt, 'found on chain (mined, not recorded)');
        return 'posted';
      }
      if (seen?.root) return fail('skip', `the chain holds root ${seen.root} for epoch ${e.epoch}, not ${e.root}`);
      if (seen && seen.latestEpoch >= e.epoch)
        return fail(
          'skip',
          `the chain is at epoch ${seen.latestEpoch} without a root for epoch ${e.epoch}: it cannot be posted; ` +
            'a later root (cumulative) supersedes it',
        );
      // Recorded before the send: a crash from here on is found by the chain read above on the next attempt.
      ledger.markPostPending(e.modelId, e.epoch, this.o.now());
      const { txHash, claimableAt } = await poster.postRoot(e.modelId, e.epoch, e.root as `0x${string}`);
      this.recordPosted(e, txHash, claimableAt, 'root posted');
      return 'posted';
    } catch (err) {
      return fail('retry', (err as Error).message);
    }
  }

  private recordPosted(e: EpochRow, txHash: string, claimableAt: number, what: string): void {
    this.o.ledger.markPosted(e.modelId, e.epoch, txHash, this.o.now(), claimableAt);
    this.o.log(
      'info',
      `epoch ${e.epoch} of ${e.modelId}: ${what} (${txHash}), claimable at ` +
        new Date(claimableAt * 1000).toISOString(),
    );
  }

  /**
   * Posts roots that did not reach the chain yet, oldest first per model: a failed epoch holds back the later
   * epochs of its model only (the chain takes epochs in increasing order), never those of other models.
   */
  async postPending(modelId?: string): Promise<void> {
    const blocked = new Set<string>();
    for (const e of this.o.ledger.unposted()) {
      if (blocked.has(e.modelId) || (modelId !== undefined && e.modelId !== modelId)) continue;
      if ((await this.post(e)) === 'retry') blocked.add(e.modelId);
    }
  }

  /**
   * Brings the database in line with the chain (run on start, queued with settlement): roots mined but not
   * recorded are recorded; posted epochs whose transaction the chain lost are unmarked and posted again. Logs
   * what it did; a chain that does not answer is logged and left to the timer, which reads it before each send.
   */
  reconcile(): Promise<SettlementReconciliation> {
    const run = this.running.then(() => this.reconcileNow());
    this.running = run.catch(() => {});
    return run;
  }

  private async reconcileNow(): Promise<SettlementReconciliation> {
    const { poster, ledger, log } = this.o;
    const out: SettlementReconciliation = { recorded: [], requeued: [], unposted: 0 };
    if (!poster) return out;
    try {
      for (const e of ledger.posted()) {
        if (!e.txHash?.startsWith('0x') || (await poster.txKnown(e.txHash))) continue;
        ledger.unmarkPosted(e.modelId, e.epoch, `the chain lost transaction ${e.txHash}: posting again`);
        out.requeued.push({ modelId: e.modelId, epoch: e.epoch });
      }
      for (const e of ledger.unposted()) {
        const seen = await poster.rootOnChain(e.modelId, e.epoch);
        if (seen?.root && seen.root === e.root) {
          this.recordPosted(e, seen.txHash ?? 'on-chain', seen.claimableAt, 'found on chain (mined, not recorded)');
          out.recorded.push({ modelId: e.modelId, epoch: e.epoch });
        } else out.unposted++;
      }
    } catch (err) {
      log('warn', `settlement reconcile: the chain did not answer (${(err as Error).message.split('\n')[0]})`);
      out.unposted = ledger.unposted().length;
      return out;
    }
    const list = (xs: Array<{ modelId: string; epoch: number }>) =>
      xs.map((x) => `${x.modelId}#${x.epoch}`).join(', ') || 'none';
    log(
      'info',
      `settlement reconciled with the chain: recorded ${list(out.recorded)}; requeued ${list(out.requeued)}; ` +
        `${out.unposted} root(s) to post`,
    );
    return out;
  }

  /**
   * Every `everyMs`: retries unposted roots, then closes an epoch for each model through the steps that finished
   * at least `lagMs` ago (default: one period). A step's receipts reach the coordinator after the step is recorded
   * — reporters flush every few seconds and back off while the coordinator was down, a restarted worker sends its
   * durable outbox first — and a receipt of a settled step is refused: settling the steps just recorded would lose
   * theirs. (A close asked for through the API settles through the last step but one, as before.)
   */
  start(everyMs: number, lagMs = everyMs): void {
    this.timer ??= setInterval(() => {
      this.running = this.running
        .then(async () => {
          await this.postPending();
          for (const m of this.o.store.listModels()) {
            const last = this.o.ledger.lastEpoch(m.id);
            const { ledger } = this.o;
            const through = Math.min(ledger.lastDoneStep(m.id) - 1, ledger.lastDoneStep(m.id, this.o.now() - lagMs));
            if (through > (last?.throughStep ?? -1))
              await this.closeNow(m.id, undefined, through).catch((e) =>
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
