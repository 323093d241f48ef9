/**
 * The contribution ledger's SQL (schema: migration 2 in store.ts): receipts, settled epochs and their
 * credits, wallet bindings and nonces, reputations. Runs on the Store's connection, inside its transactions.
 */
import type { SignedReceipt } from '../ledger/receipt.ts';
import type { PublishedBinding } from '../ledger/recompute.ts';
import type { Store } from './store.ts';

type Row = Record<string, unknown>;

export interface StoredReceipt extends SignedReceipt {
  id: number;
  epoch: number | null;
}

export interface EpochRow {
  modelId: string;
  epoch: number;
  closedAt: number;
  /** Receipts of steps ≤ throughStep belong to this epoch or an earlier one. */
  throughStep: number;
  root: string | null;
  leaves: Array<{ wallet: string; shares: string }>;
  verdicts: unknown[];
  audits: unknown[];
  /** The bindings (with both signatures) the leaves were computed with. */
  bindings: BindingRow[];
  txHash: string | null;
  postedAt: number | null;
  claimableAt: number | null;
  chainError: string | null;
}

/** A stored binding: the signed message as the peer sent it, and when it was recorded (published as is). */
export type BindingRow = PublishedBinding;

export interface Reputation {
  peerId: string;
  strikes: number;
  banned: boolean;
  reason: string | null;
  at: number;
}

const toReceipt = (r: Row): StoredReceipt => ({
  id: Number(r.id),
  epoch: r.epoch === null ? null : Number(r.epoch),
  model: String(r.model_id),
  round: Number(r.round),
  stage: Number(r.stage),
  replica: Number(r.replica),
  replicas: Number(r.replicas),
  step: Number(r.step),
  micro: Number(r.micro),
  kind: String(r.kind) as SignedReceipt['kind'],
  flops: Number(r.flops),
  inputHash: String(r.input_hash),
  outputHash: String(r.output_hash),
  peerId: String(r.peer_id),
  signature: String(r.signature),
  ...(r.sketch === null || r.sketch === undefined
    ? {}
    : { sketch: JSON.parse(String(r.sketch)) as number[], sessionStep: Number(r.session_step) }),
});

const toEpoch = (r: Row): EpochRow => ({
  modelId: String(r.model_id),
  epoch: Number(r.epoch),
  closedAt: Number(r.closed_at),
  throughStep: Number(r.through_step),
  root: r.root === null ? null : String(r.root),
  leaves: JSON.parse(String(r.leaves)),
  verdicts: JSON.parse(String(r.verdicts)),
  audits: JSON.parse(String(r.audits)),
  bindings: JSON.parse(String(r.bindings)),
  txHash: r.tx_hash === null ? null : String(r.tx_hash),
  postedAt: r.posted_at === null ? null : Number(r.posted_at),
  claimableAt: r.claimable_at === null ? null : Number(r.claimable_at),
  chainError: r.chain_error === null ? null : String(r.chain_error),
});

const toBinding = (r: Row): BindingRow => ({
  peerId: String(r.peer_id),
  wallet: String(r.wallet),
  nonce: String(r.nonce),
  expiry: String(r.expiry),
  walletSignature: String(r.wallet_signature),
  peerSignature: String(r.peer_signature),
  at: Number(r.at),
});

export class LedgerStore {
  readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  private get db() {
    return this.store.connection;
  }

  /**
   * True when this very receipt (same unit, same peer, same signature: Ed25519 signs deterministically) is stored:
   * a retry whose first answer was lost.
   */
  isStored(r: SignedReceipt): boolean {
    const row = this.db
      .prepare(
        `SELECT signature FROM receipts WHERE model_id = ? AND round = ? AND stage = ? AND step = ? AND micro = ?
          AND kind = ? AND peer_id = ?`,
      )
      .get(r.model, r.round, r.stage, r.step, r.micro, r.kind, r.peerId) as Row | undefined;
    return row !== undefined && String(row.signature) === r.signature;
  }

  /**
   * Inserts a receipt; returns 'duplicate' when this peer's receipt, or another's train receipt, for the unit exists.
   */
  /**
   * Drops the unsettled train receipts of `step` that claim fewer replicas than its stage had when the step was
   * recorded (`replicas`, per stage): what a receipt arriving after the record is refused for. Returns how many.
   */
  dropBelowReplicas(modelId: string, step: number, replicas: readonly number[]): number {
    const del = this.db.prepare(
      `DELETE FROM receipts WHERE model_id = ? AND step = ? AND stage = ? AND replicas < ? AND kind = 'train'
         AND epoch IS NULL`,
    );
    return replicas.reduce((n, r, stage) => n + Number(del.run(modelId, step, stage, r).changes), 0);
  }

  insertReceipt(r: SignedReceipt, at: number): 'ok' | 'duplicate' {
    const res = this.db
      .prepare(
        `INSERT INTO receipts (model_id, round, stage, replica, replicas, step, micro, kind, flops, input_hash,
          output_hash, peer_id, signature, at, sketch, session_step)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      )
      .run(
        r.model,
        r.round,
        r.stage,
        r.replica,
        r.replicas,
        r.step,
        r.micro,
        r.kind,
        r.flops,
        r.inputHash,
        r.outputHash,
        r.peerId,
        r.signature,
        at,
        r.sketch ? JSON.stringify(r.sketch) : null,
        r.sessionStep ?? null,
      );
    return Number(res.changes) === 1 ? 'ok' : 'duplicate';
  }

  /** Receipts not settled yet with step ≤ throughStep (what closing an epoch takes). */
  unsettledReceipts(modelId: string, throughStep: number): StoredReceipt[] {
    return (
      this.db
        .prepare('SELECT * FROM receipts WHERE model_id = ? AND epoch IS NULL AND step <= ? ORDER BY id')
        .all(modelId, throughStep) as Row[]
    ).map(toReceipt);
  }

  /** Training receipts (train and audit) not settled yet: the open epoch as settlement would judge it now. */
  openTrainingReceipts(modelId: string): StoredReceipt[] {
    return (
      this.db
        .prepare(
          "SELECT * FROM receipts WHERE model_id = ? AND epoch IS NULL AND kind IN ('train', 'audit') ORDER BY id",
        )
        .all(modelId) as Row[]
    ).map(toReceipt);
  }

  assignEpoch(modelId: string, epoch: number, throughStep: number): void {
    this.db
      .prepare('UPDATE receipts SET epoch = ? WHERE model_id = ? AND epoch IS NULL AND step <= ?')
      .run(epoch, modelId, throughStep);
  }

  epochReceipts(modelId: string, epoch: number, afterId = 0, limit = 1000): StoredReceipt[] {
    return (
      this.db
        .prepare('SELECT * FROM receipts WHERE model_id = ? AND epoch = ? AND id > ? ORDER BY id LIMIT ?')
        .all(modelId, epoch, afterId, limit) as Row[]
    ).map(toReceipt);
  }

  /** FLOPs claimed in receipts not settled yet, per peer (pending: not verified). */
  pendingFlops(modelId: string): Map<string, number> {
    const rows = this.db
      .prepare('SELECT peer_id, SUM(flops) AS f FROM receipts WHERE model_id = ? AND epoch IS NULL GROUP BY peer_id')
      .all(modelId) as Row[];
    return new Map(rows.map((r) => [String(r.peer_id), Number(r.f)]));
  }

  countReceipts(modelId: string): { settled: number; pending: number } {
    const r = this.db
      .prepare('SELECT SUM(epoch IS NOT NULL) AS s, SUM(epoch IS NULL) AS p FROM receipts WHERE model_id = ?')
      .get(modelId) as Row;
    return { settled: Number(r.s ?? 0), pending: Number(r.p ?? 0) };
  }

  /** The highest step recorded done for the model (−1: none); with `finishedBy`, of those finished by then. */
  lastDoneStep(modelId: string, finishedBy?: number): number {
    const done = "SELECT MAX(step) AS s FROM steps WHERE model_id = ? AND status = 'done'";
    const r = (
      finishedBy === undefined
        ? this.db.prepare(done).get(modelId)
        : this.db.prepare(`${done} AND finished_at <= ?`).get(modelId, finishedBy)
    ) as Row;
    return r.s === null ? -1 : Number(r.s);
  }

  // Epochs.

  insertEpoch(e: Omit<EpochRow, 'txHash' | 'postedAt' | 'claimableAt' | 'chainError'>): void {
    this.db
      .prepare(
        'INSERT INTO epochs (model_id, epoch, closed_at, through_step, root, leaves, verdicts, audits, ' +
          'bindings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        e.modelId,
        e.epoch,
        e.closedAt,
        e.throughStep,
        e.root,
        JSON.stringify(e.leaves),
        JSON.stringify(e.verdicts),
        JSON.stringify(e.audits),
        JSON.stringify(e.bindings),
      );
  }

  markPosted(modelId: string, epoch: number, txHash: string, postedAt: number, claimableAt: number): void {
    this.db
      .prepare(
        'UPDATE epochs SET tx_hash = ?, posted_at = ?, claimable_at = ?, chain_error = NULL WHERE model_id = ? ' +
          'AND epoch = ?',
      )
      .run(txHash, postedAt, claimableAt, modelId, epoch);
  }

  /** Marks the root as being sent (before the transaction): reconcile() reads the chain for such epochs. */
  markPostPending(modelId: string, epoch: number, at: number): void {
    this.db.prepare('UPDATE epochs SET post_pending_at = ? WHERE model_id = ? AND epoch = ?').run(at, modelId, epoch);
  }

  /** Forgets a recorded post whose transaction the chain lost, so the root is posted again (`why` is shown). */
  unmarkPosted(modelId: string, epoch: number, why: string): void {
    this.db
      .prepare(
        'UPDATE epochs SET tx_hash = NULL, posted_at = NULL, claimable_at = NULL, chain_error = ? WHERE model_id = ? ' +
          'AND epoch = ?',
      )
      .run(why.slice(0, 500), modelId, epoch);
  }

  /** Epochs whose root the database records as on chain. */
  posted(): EpochRow[] {
    return (
      this.db.prepare('SELECT * FROM epochs WHERE tx_hash IS NOT NULL ORDER BY model_id, epoch').all() as Row[]
    ).map(toEpoch);
  }

  markChainError(modelId: string, epoch: number, error: string): void {
    this.db
      .prepare('UPDATE epochs SET chain_error = ? WHERE model_id = ? AND epoch = ?')
      .run(error.slice(0, 500), modelId, epoch);
  }

  getEpoch(modelId: string, epoch: number): EpochRow | undefined {
    const r = this.db.prepare('SELECT * FROM epochs WHERE model_id = ? AND epoch = ?').get(modelId, epoch) as
      | Row
      | undefined;
    return r && toEpoch(r);
  }

  listEpochs(modelId: string): EpochRow[] {
    return (this.db.prepare('SELECT * FROM epochs WHERE model_id = ? ORDER BY epoch').all(modelId) as Row[]).map(
      toEpoch,
    );
  }

  lastEpoch(modelId: string): EpochRow | undefined {
    const r = this.db.prepare('SELECT * FROM epochs WHERE model_id = ? ORDER BY epoch DESC LIMIT 1').get(modelId) as
      | Row
      | undefined;
    return r && toEpoch(r);
  }

  /** Epochs with a root that never reached the chain (retried by the settlement timer). */
  unposted(): EpochRow[] {
    return (
      this.db
        .prepare('SELECT * FROM epochs WHERE root IS NOT NULL AND tx_hash IS NULL ORDER BY model_id, epoch')
        .all() as Row[]
    ).map(toEpoch);
  }

  insertCredit(modelId: string, epoch: number, peerId: string, flops: bigint, caught: boolean): void {
    this.db
      .prepare('INSERT INTO credits (model_id, epoch, peer_id, flops, caught) VALUES (?, ?, ?, ?, ?)')
      .run(modelId, epoch, peerId, flops.toString(), caught ? 1 : 0);
  }

  /** Credits per settled epoch (index = epoch − 1), as cumulativeShares() takes them. */
  creditsByEpoch(modelId: string, throughEpoch: number): Map<string, bigint>[] {
    const out = Array.from({ length: throughEpoch }, () => new Map<string, bigint>());
    const rows = this.db
      .prepare('SELECT epoch, peer_id, flops FROM credits WHERE model_id = ? AND epoch <= ?')
      .all(modelId, throughEpoch) as Row[];
    for (const r of rows) out[Number(r.epoch) - 1].set(String(r.peer_id), BigInt(String(r.flops)));
    return out;
  }

  // Bindings.

  getBinding(peerId: string): BindingRow | undefined {
    const r = this.db.prepare('SELECT * FROM bindings WHERE peer_id = ?').get(peerId) as Row | undefined;
    return r && toBinding(r);
  }

  bindingsOf(wallet: string): BindingRow[] {
    return (this.db.prepare('SELECT * FROM bindings WHERE wallet = ? ORDER BY at').all(wallet) as Row[]).map(toBinding);
  }

  allBindings(): Map<string, string> {
    return new Map(
      (this.db.prepare('SELECT peer_id, wallet FROM bindings').all() as Row[]).map((r) => [
        String(r.peer_id),
        String(r.wallet),
      ]),
    );
  }

  insertBinding(b: BindingRow): void {
    this.db
      .prepare(
        'INSERT INTO bindings (peer_id, wallet, nonce, expiry, wallet_signature, peer_signature, at) VALUES ' +
          '(?, ?, ?, ?, ?, ?, ?)',
      )
      .run(b.peerId, b.wallet, b.nonce, b.expiry, b.walletSignature, b.peerSignature, b.at);
  }

  /** The highest nonce this wallet has used (0: none). */
  usedNonce(wallet: string): number {
    const r = this.db.prepare('SELECT used FROM wallet_nonces WHERE wallet = ?').get(wallet) as Row | undefined;
    return r ? Number(r.used) : 0;
  }

  useNonce(wallet: string, nonce: number): void {
    this.db
      .prepare(
        'INSERT INTO wallet_nonces (wallet, used) VALUES (?, ?) ON CONFLICT (wallet) DO UPDATE SET used = ' +
          'excluded.used',
      )
      .run(wallet, nonce);
  }

  // Reputations.

  reputation(peerId: string): Reputation | undefined {
    const r = this.db.prepare('SELECT * FROM reputations WHERE peer_id = ?').get(peerId) as Row | undefined;
    return (
      r && {
        peerId,
        strikes: Number(r.strikes),
        banned: Number(r.banned) === 1,
        reason: r.reason === null ? null : String(r.reason),
        at: Number(r.at),
      }
    );
  }

  strike(peerId: string, reason: string, banAfter: number, at: number): Reputation {
    const strikes = (this.reputation(peerId)?.strikes ?? 0) + 1;
    const banned = strikes >= banAfter;
    this.db
      .prepare(
        'INSERT INTO reputations (peer_id, strikes, banned, reason, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT ' +
          '(peer_id) DO UPDATE SET strikes = excluded.strikes, banned = excluded.banned, reason = ' +
          'excluded.reason, at = excluded.at',
      )
      .run(peerId, strikes, banned ? 1 : 0, reason, at);
    return { peerId, strikes, banned, reason, at };
  }

  bannedPeers(): Set<string> {
    return new Set(
      (this.db.prepare('SELECT peer_id FROM reputations WHERE banned = 1').all() as Row[]).map((r) =>
        String(r.peer_id),
      ),
    );
  }

  /** The most replicas the stage ever had (highest replica index held + 1). */
  replicasEver(modelId: string, stage: number): number {
    const r = this.db
      .prepare('SELECT MAX(replica) AS r FROM assignment_held WHERE model_id = ? AND stage = ?')
      .get(modelId, stage) as Row;
    return r.r === null ? 0 : Number(r.r) + 1;
  }

  /** Whether the peer ever held (model, stage, replica). */
  held(modelId: string, stage: number, replica: number, peerId: string): boolean {
    return !!this.db
      .prepare('SELECT 1 FROM assignment_held WHERE model_id = ? AND stage = ? AND replica = ? AND peer_id = ?')
      .get(modelId, stage, replica, peerId);
  }
}
