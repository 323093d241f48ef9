/**
 * The contribution ledger's API side: signed work receipts in, wallet bindings, and the views holders and
 * auditors read (epochs, their receipts, a wallet's shares and Merkle proof). Settlement is settlement.ts.
 *
 * Nothing is taken on a peer's word: every receipt's signature, stage, replica, FLOPs and step are checked
 * before it is stored; a batch answers per receipt, so one forged receipt neither blocks nor taints the rest.
 */
import { getAddress, isAddress } from 'viem';
import type { Deployment } from '../chain/deployment.ts';
import { BindingError, verifyBinding } from '../ledger/binding.ts';
import { receiptFlops } from '../ledger/flops.ts';
import {
  isInferenceKind,
  parseReceipt,
  ReceiptError,
  verifyReceiptSignature,
  type SignedReceipt,
} from '../ledger/receipt.ts';
import { proofFor, shareTree } from '../ledger/shares.ts';
import type { StageSpec } from '../model/stages.ts';
import { type EpochDetail, type EpochSummary, MAX_RECEIPTS_PER_POST } from '../wire/index.ts';
import { stageSpecs } from '../train/run-derived.ts';
import { HttpError } from './errors.ts';
import type { EpochRow, LedgerStore } from './ledger-store.ts';
import { rebalance } from './placement.ts';
import type { Store } from './store.ts';
import type { Logger, ModelRecord } from './types.ts';
import { object, onlyKeys, PEER_ID, string } from './validate.ts';

/** A receipt identical to one stored: refused, yet an acknowledgement (the reporter may forget it). */
class DuplicateReceipt extends ReceiptError {}

/** Where the contracts live (what the app and CLIs read from GET /api/chain). */
export type ChainInfo = Pick<Deployment, 'rpcUrl' | 'chainId' | 'registry' | 'paymentToken' | 'models' | 'escrow'>;

export interface LedgerOptions {
  store: Store;
  ledger: LedgerStore;
  now: () => number;
  log: Logger;
  /** The chain bindings are signed for (EIP-712 domain). */
  chainId: number;
  chain: () => ChainInfo | null;
}

/** Receipts per request. */
export const MAX_RECEIPTS = MAX_RECEIPTS_PER_POST;
/** How far ahead of the last recorded step a receipt may be (the step in flight, its report not in yet). */
const STEP_SLACK = 2;
/** Longest validity of a binding signature. */
export const MAX_BINDING_SECONDS = 24 * 3600;

export class LedgerService {
  private readonly o: LedgerOptions;

  constructor(opts: LedgerOptions) {
    this.o = opts;
  }

  private model(id: string): ModelRecord {
    const m = this.o.store.getModel(id);
    if (!m) throw new HttpError('notFound', `unknown model ${JSON.stringify(id.slice(0, 80))}`);
    return m;
  }

  /** What checking a batch of receipts of one model reads once (not once per receipt). */
  private receiptContext(model: ModelRecord) {
    const specs = stageSpecs(model.spec);
    const { ledger, store } = this.o;
    const replicasNow = specs.map(() => 0);
    for (const a of store.listAssignments(model.id)) replicasNow[a.stage]++;
    return {
      specs,
      replicasNow,
      replicasEver: specs.map((s) => ledger.replicasEver(model.id, s.index)),
      settled: ledger.lastEpoch(model.id)?.throughStep ?? -1,
      latest: ledger.lastDoneStep(model.id),
      banned: ledger.bannedPeers(),
    };
  }

  /**
   * Checks one receipt and stores it, or throws ReceiptError with the reason: the model, the peer's own
   * signature, not banned, a stage it held, its replica count, its FLOPs (`flops`: what this unit computes),
   * an unsettled step not ahead of the swarm, not a duplicate.
   */
  private async accept(
    model: ModelRecord,
    r: SignedReceipt,
    c: ReturnType<LedgerService['receiptContext']>,
    flops: (spec: StageSpec) => number,
  ): Promise<void> {
    const { ledger } = this.o;
    const describe = `${r.kind} receipt of ${r.peerId} for stage ${r.stage} step ${r.step} unit ${r.micro}`;
    const refuse = (why: string): never => {
      throw new ReceiptError(`${describe}: ${why}`);
    };
    if (r.model !== model.id) refuse(`names model ${r.model}, posted to ${model.id}`);
    // Before the other checks: a retry of a stored receipt is answered as such even once its step is settled.
    if (ledger.isStored(r)) throw new DuplicateReceipt(`${describe}: duplicate: already stored (credited once)`);
    if (!(await verifyReceiptSignature(r))) refuse('the signature is not this peer’s');
    if (c.banned.has(r.peerId)) refuse('the peer is banned after failed audits');
    const spec = c.specs[r.stage] ?? refuse(`model ${model.id} has ${c.specs.length} stages`);
    if (!ledger.held(model.id, r.stage, r.replica, r.peerId))
      refuse(`the peer never held stage ${r.stage} replica ${r.replica}`);
    // Claiming fewer replicas than the stage has would make a sibling's micro-batches look like one's own;
    // more than it ever had is nonsense. The count that binds is the one the stage had when the step was recorded
    // (a receipt kept in a durable outbox may arrive after the stage gained replicas). A receipt of a step not
    // recorded yet is held to it when it is (service.ts reportMetric drops those below it): the assignment's count
    // runs ahead of a round still training with fewer replicas after a peer rejoined.
    // (After peers leave, the count drops: earlier receipts stay valid.)
    const atStep = this.o.store.stepReplicas(model.id, r.step)?.[r.stage];
    const least = atStep ?? 1;
    const ever = c.replicasEver[r.stage];
    if (r.replicas < least || r.replicas > ever)
      refuse(
        `claims ${r.replicas} replicas; the stage had ${least} ${
          atStep === undefined ? 'now' : `when step ` + `${r.step} was recorded`
        } and never more than ${ever}`,
      );
    const expected = flops(spec);
    if (r.flops !== expected) refuse(`claims ${r.flops} FLOPs; this unit computes ${expected}`);
    if (r.step <= c.settled) refuse(`step ${r.step} is already settled (through step ${c.settled})`);
    if (r.step > c.latest + STEP_SLACK) refuse(`step ${r.step} is ahead of the swarm (last recorded step ${c.latest})`);
    if (ledger.insertReceipt(r, this.o.now()) === 'duplicate') {
      // The same receipt in two requests at once (a retry racing its first try) lands here for the second.
      if (ledger.isStored(r)) throw new DuplicateReceipt(`${describe}: duplicate: already stored (credited once)`);
      refuse('duplicate: this unit is already receipted');
    }
  }

  /** `{ receipts: SignedReceipt[] }` → how many were stored, and each refused one with its reason. */
  async submitReceipts(modelId: string, body: unknown) {
    const model = this.model(modelId);
    const o = object(body, 'receipts');
    onlyKeys(o, 'receipts', ['receipts']);
    if (!Array.isArray(o.receipts) || o.receipts.length === 0 || o.receipts.length > MAX_RECEIPTS) {
      throw new HttpError('badRequest', `receipts must be an array of 1 to ${MAX_RECEIPTS} receipts`);
    }
    const c = this.receiptContext(model);
    // `duplicate: true`: this receipt is stored already, so the reporter may forget it (nothing is credited twice).
    const rejected: Array<{ index: number; reason: string; duplicate?: true }> = [];
    let accepted = 0;
    for (let i = 0; i < o.receipts.length; i++) {
      try {
        const r = parseReceipt(o.receipts[i]);
        // Inference hops are receipted by whoever requested them, as it receives them (recordInference).
        if (isInferenceKind(r.kind))
          throw new ReceiptError(`${r.kind} receipts are recorded by the inference requester, not posted by peers`);
        await this.accept(model, r, c, (spec) =>
          receiptFlops(model.spec.model, spec, model.spec.batch, model.spec.model.context, r.kind),
        );
        accepted++;
      } catch (e) {
        if (!(e instanceof ReceiptError)) throw e;
        rejected.push({ index: i, reason: e.message, ...(e instanceof DuplicateReceipt ? { duplicate: true } : {}) });
        this.o.log('warn', `receipt refused: ${e.message}`);
      }
    }
    return { accepted, rejected };
  }

  /**
   * Stores the receipt a stage holder returned with an inference hop this coordinator requested (the requester
   * has checked its hashes and sketch against the bytes; `flops` is what the hop computed). Throws
   * ReceiptError with the reason when refused (logged by the caller); the hop's result stands either way.
   */
  async recordInference(modelId: string, receipt: unknown, flops: number): Promise<SignedReceipt> {
    const model = this.model(modelId);
    const r = parseReceipt(receipt);
    if (!isInferenceKind(r.kind)) throw new ReceiptError(`an inference hop was answered with a ${r.kind} receipt`);
    await this.accept(model, r, this.receiptContext(model), () => flops);
    return r;
  }

  /** The nonce a wallet's next binding must use. */
  nonce(wallet: string) {
    const w = address(wallet);
    return {
      wallet: w,
      nonce: String(this.o.ledger.usedNonce(w) + 1),
      chainId: this.o.chainId,
      maxExpirySeconds: MAX_BINDING_SECONDS,
    };
  }

  /** Binds a peer to a wallet (both signatures, the wallet's next nonce, an expiry within a day). Permanent. */
  async bind(body: unknown) {
    const o = object(body, 'binding');
    onlyKeys(o, 'binding', ['peerId', 'wallet', 'nonce', 'expiry', 'walletSignature', 'peerSignature']);
    const b = {
      peerId: string(o.peerId, 'peerId', PEER_ID, 128),
      wallet: string(o.wallet, 'wallet', undefined, 42),
      nonce: string(o.nonce, 'nonce', /^\d+$/, 30),
      expiry: string(o.expiry, 'expiry', /^\d+$/, 20),
      walletSignature: string(o.walletSignature, 'walletSignature', undefined, 140),
      peerSignature: string(o.peerSignature, 'peerSignature', undefined, 140),
    };
    const nowS = Math.floor(this.o.now() / 1000);
    let m;
    try {
      m = await verifyBinding(b, this.o.chainId, nowS);
    } catch (e) {
      if (!(e instanceof BindingError)) throw e;
      this.o.log('warn', `binding of ${b.peerId} refused: ${e.message}`);
      throw new HttpError('unauthorized', e.message);
    }
    if (m.expiry > BigInt(nowS + MAX_BINDING_SECONDS))
      throw new HttpError('badRequest', `expiry is more than ${MAX_BINDING_SECONDS} s away`);
    const { ledger, store } = this.o;
    const at = this.o.now();
    const binding = store.transaction(() => {
      const expected = ledger.usedNonce(m.wallet) + 1;
      if (m.nonce !== BigInt(expected))
        throw new HttpError(
          'conflict',
          `nonce ${m.nonce} is not this wallet's next (${expected}): it was used already or skipped (replay?)`,
        );
      const prior = ledger.getBinding(m.peerId);
      if (prior)
        throw new HttpError('conflict', `peer ${m.peerId} is already bound to ${prior.wallet}; bindings are permanent`);
      const mine = store.assignmentsOf(m.peerId);
      const others = ledger
        .bindingsOf(m.wallet)
        .flatMap((x) => store.assignmentsOf(x.peerId).map((a) => ({ ...a, peerId: x.peerId })));
      const clash = mine.length > 0 && others[0];
      if (clash)
        throw new HttpError(
          'conflict',
          `wallet ${m.wallet} already holds stage ${clash.stage} of ${clash.modelId} with peer ` +
            `${clash.peerId}; one wallet holds one stage at a time`,
        );
      const row = {
        peerId: m.peerId,
        wallet: m.wallet,
        nonce: b.nonce,
        expiry: b.expiry,
        walletSignature: b.walletSignature,
        peerSignature: b.peerSignature,
        at,
      };
      ledger.insertBinding(row);
      ledger.useNonce(m.wallet, expected);
      store.logEvent('bind', { peerId: m.peerId, wallet: m.wallet }, at);
      rebalance(store, at, `binding of ${m.peerId}`, this.o.log);
      return { peerId: m.peerId, wallet: m.wallet, at };
    });
    this.o.log('info', `peer ${m.peerId} bound to ${m.wallet}`);
    return { binding };
  }

  bindingOf(peerId: string) {
    const b = this.o.ledger.getBinding(string(peerId, 'peerId', PEER_ID, 128));
    return { binding: b ? { peerId: b.peerId, wallet: b.wallet, at: b.at } : null };
  }

  /**
   * A wallet's view: its peers, and per model its pending FLOPs, shares per settled epoch and the proof to claim with.
   */
  wallet(raw: string) {
    const w = address(raw);
    const { ledger, store } = this.o;
    const peers = ledger.bindingsOf(w).map((b) => b.peerId);
    const nowS = Math.floor(this.o.now() / 1000);
    const models = store.listModels().map((model) => {
      const pending = ledger.pendingFlops(model.id);
      const epochs = ledger.listEpochs(model.id);
      let before = 0n;
      const mine: Array<{
        epoch: number;
        shares: string;
        cumulative: string;
        status: string;
        claimableAt: number | null;
        root: string | null;
      }> = [];
      // Claim with the newest claimable root; while none is, show the newest posted one and when it opens.
      let claimFrom: EpochRow | undefined;
      for (const e of epochs) {
        const leaf = e.leaves.find((l) => l.wallet === w);
        if (!leaf) continue;
        const cumulative = BigInt(leaf.shares);
        mine.push({
          epoch: e.epoch,
          shares: (cumulative - before).toString(),
          cumulative: leaf.shares,
          status: epochStatus(e, nowS),
          claimableAt: e.claimableAt,
          root: e.root,
        });
        before = cumulative;
        if (e.txHash && (epochStatus(e, nowS) === 'claimable' || !claimFrom || claimFrom.claimableAt! > nowS))
          claimFrom = e;
      }
      // One tree, for the epoch chosen (building one per epoch was wasted work).
      const p =
        claimFrom && proofFor(shareTree(claimFrom.leaves as Array<{ wallet: `0x${string}`; shares: string }>), w)!;
      const claim =
        claimFrom && p
          ? { epoch: claimFrom.epoch, cumulative: p.shares, proof: p.proof, claimableAt: claimFrom.claimableAt }
          : null;
      return {
        modelId: model.id,
        pendingFlops: peers.reduce((a, p) => a + (pending.get(p) ?? 0), 0),
        epochs: mine,
        claim,
      };
    });
    return { wallet: w, peers, models };
  }

  epochs(modelId: string) {
    this.model(modelId);
    const nowS = Math.floor(this.o.now() / 1000);
    return {
      modelId,
      pending: this.o.ledger.countReceipts(modelId).pending,
      epochs: this.o.ledger.listEpochs(modelId).map((e) => epochSummary(e, nowS)),
    };
  }

  /** Everything needed to recompute an epoch's root: leaves, verdicts, audits, the bindings (with signatures). */
  epoch(modelId: string, n: number): EpochDetail {
    this.model(modelId);
    const e = this.o.ledger.getEpoch(modelId, n);
    if (!e) throw new HttpError('notFound', `model ${modelId} has no settled epoch ${n}`);
    return {
      ...epochSummary(e, Math.floor(this.o.now() / 1000)),
      leaves: e.leaves,
      verdicts: e.verdicts,
      audits: e.audits,
      bindings: e.bindings,
    };
  }

  epochReceipts(modelId: string, n: number, after: number, limit: number) {
    this.model(modelId);
    if (!this.o.ledger.getEpoch(modelId, n))
      throw new HttpError('notFound', `model ${modelId} has no settled epoch ${n}`);
    const receipts = this.o.ledger.epochReceipts(modelId, n, after, limit).map(({ id, epoch, ...r }) => ({ id, ...r }));
    return { modelId, epoch: n, receipts, next: receipts.length > 0 ? receipts[receipts.length - 1].id : after };
  }

  chainView() {
    return { chain: this.o.chain() };
  }
}

function address(raw: string): `0x${string}` {
  if (!isAddress(raw))
    throw new HttpError('badRequest', `${JSON.stringify(raw.slice(0, 60))} is not an Ethereum address`);
  return getAddress(raw);
}

/**
 * no-root: settled with no root (no bound wallet earned), so nothing goes on chain; pending-chain: settled, root
 * not on chain yet; challenge: posted, inside the delay; claimable.
 */
export function epochStatus(e: EpochRow, nowS: number): 'no-root' | 'pending-chain' | 'challenge' | 'claimable' {
  if (e.root === null) return 'no-root';
  if (!e.txHash || e.claimableAt === null) return 'pending-chain';
  return e.claimableAt > nowS ? 'challenge' : 'claimable';
}

function epochSummary(e: EpochRow, nowS: number): EpochSummary {
  const verdicts = e.verdicts as Array<{ peerId: string; caught: boolean; credited: number }>;
  return {
    epoch: e.epoch,
    closedAt: e.closedAt,
    throughStep: e.throughStep,
    root: e.root,
    txHash: e.txHash,
    postedAt: e.postedAt,
    claimableAt: e.claimableAt,
    chainError: e.chainError,
    status: epochStatus(e, nowS),
    wallets: e.leaves.length,
    credited: verdicts.reduce((a, v) => a + v.credited, 0),
    caught: verdicts.filter((v) => v.caught).map((v) => v.peerId),
    auditCounts: (e.audits as Array<{ result: string }>).reduce<Record<string, number>>((a, x) => {
      a[x.result] = (a[x.result] ?? 0) + 1;
      return a;
    }, {}),
  };
}
