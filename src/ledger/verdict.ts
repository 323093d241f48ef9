/**
 * Judging an epoch's receipts: a pure function of the receipts alone, so the coordinator's settlement and anyone
 * re-running `npm run verify-epoch` reach the same credits.
 *
 * Each audit receipt is compared with the train receipt of the same unit (model, round, stage, step,
 * micro-batch). Same input, different output: the audited peer is caught — every receipt it made in the epoch
 * is void. Different input: the sender fed the two replicas different bytes, which says nothing about the
 * audited peer (inconclusive). An audit with no train receipt to compare has checked nothing.
 * A train receipt must also be corroborated by the neighbouring stage: its input hash is the previous stage's
 * output hash (or, at stage 0, its output hash the next stage's input hash) for the same unit, so work nobody
 * received or sent — a receipt invented for a step that never ran — earns nothing without a colluding peer.
 * Credits = FLOPs of the receipts of peers not caught: their corroborated train work, plus audits that compared.
 *
 * Inference hops are judged the same way, by unit (the requester's hop number): an infer-audit with the same
 * input hash and a sketch that disagrees beyond float32 noise catches the serving peer — compared only when
 * both ran on the same step's weights for their whole session (else 'stale': training moved the weights). Infer
 * receipts need no neighbour's corroboration: only the requester records them (peers cannot post them), as it receives
 * the work.
 */
import { inferUnitKey, isInferenceKind, unitKey, type SignedReceipt, type WorkReceipt } from './receipt.ts';
import { sketchesAgree } from './sketch.ts';

/**
 * stale: an inference replay whose weights differ from the served hop's (a training step fell between): not comparable.
 */
export type AuditResult = 'match' | 'mismatch' | 'input-mismatch' | 'unmatched' | 'stale';

export interface AuditOutcome {
  unit: string;
  auditor: string;
  /** The peer whose train receipt was checked (null when there was none). */
  audited: string | null;
  result: AuditResult;
}

export interface PeerVerdict {
  peerId: string;
  /** An audit with the same input found a different output: the peer's receipts of the epoch are void. */
  caught: boolean;
  /** FLOPs of corroborated train receipts. */
  trainFlops: number;
  auditFlops: number;
  /** FLOPs of inference hops served (infer receipts). */
  inferFlops: number;
  /** Train receipts no neighbouring stage's receipt corroborates (not credited). */
  unconfirmed: number;
  /** Verified FLOPs: what the peer is credited (0 when caught). */
  credited: number;
  receipts: number;
  /** Audits of this peer's work that matched / did not. */
  passed: number;
  failed: number;
}

export interface EpochJudgement {
  verdicts: PeerVerdict[];
  audits: AuditOutcome[];
}

/** `stages`: the model's stage count (a one-stage model has no neighbour to corroborate). */
export function judgeEpoch(receipts: readonly WorkReceipt[], stages: number): EpochJudgement {
  const train = new Map<string, WorkReceipt>();
  const served = new Map<string, WorkReceipt>();
  for (const r of receipts) {
    if (r.kind === 'train' && !train.has(unitKey(r))) train.set(unitKey(r), r);
    if (r.kind === 'infer' && !served.has(inferUnitKey(r))) served.set(inferUnitKey(r), r);
  }
  const corroborated = (r: WorkReceipt): boolean => {
    if (stages === 1) return true;
    if (r.stage > 0) return train.get(unitKey({ ...r, stage: r.stage - 1 }))?.outputHash === r.inputHash;
    return train.get(unitKey({ ...r, stage: 1 }))?.inputHash === r.outputHash;
  };
  const verdicts = new Map<string, PeerVerdict>();
  const of = (peerId: string) => {
    let v = verdicts.get(peerId);
    if (!v)
      verdicts.set(
        peerId,
        (v = {
          peerId,
          caught: false,
          trainFlops: 0,
          auditFlops: 0,
          inferFlops: 0,
          unconfirmed: 0,
          credited: 0,
          receipts: 0,
          passed: 0,
          failed: 0,
        }),
      );
    return v;
  };
  const audits: AuditOutcome[] = [];
  const comparedAudits = new Set<WorkReceipt>();
  for (const r of receipts) {
    const v = of(r.peerId);
    v.receipts++;
    if (r.kind === 'train') {
      if (corroborated(r)) v.trainFlops += r.flops;
      else v.unconfirmed++;
      continue;
    }
    if (r.kind === 'infer') {
      v.inferFlops += r.flops;
      continue;
    }
    const inference = isInferenceKind(r.kind);
    const unit = inference ? inferUnitKey(r) : unitKey(r);
    const t = (inference ? served : train).get(unit);
    const same = (a: WorkReceipt, b: WorkReceipt) =>
      inference ? sketchesAgree(a.sketch ?? [], b.sketch ?? []) : a.outputHash === b.outputHash;
    let result: AuditResult;
    if (!t || t.peerId === r.peerId) result = 'unmatched';
    else if (t.inputHash !== r.inputHash) result = 'input-mismatch';
    else if (inference && !sameWeights(t, r)) result = 'stale';
    else result = same(t, r) ? 'match' : 'mismatch';
    audits.push({ unit, auditor: r.peerId, audited: t && t.peerId !== r.peerId ? t.peerId : null, result });
    if (result === 'match' || result === 'mismatch') {
      comparedAudits.add(r);
      const checked = of(t!.peerId);
      if (result === 'match') checked.passed++;
      else {
        checked.failed++;
        checked.caught = true;
      }
    }
  }
  for (const r of comparedAudits) of(r.peerId).auditFlops += r.flops;
  for (const v of verdicts.values()) v.credited = v.caught ? 0 : v.trainFlops + v.auditFlops + v.inferFlops;
  return { verdicts: [...verdicts.values()].sort((a, b) => (a.peerId < b.peerId ? -1 : 1)), audits };
}

/** Both hops ran on one step's weights throughout their sessions, the same step. */
function sameWeights(a: WorkReceipt, b: WorkReceipt): boolean {
  return a.step === b.step && a.sessionStep === a.step && b.sessionStep === b.step;
}

/** Receipts in a canonical order (what settlement publishes and verification re-reads). */
export function sortReceipts<T extends SignedReceipt>(rs: T[]): T[] {
  const key = (r: SignedReceipt) => [r.model, r.round, r.stage, r.step, r.micro, r.kind, r.peerId].join('\u0000');
  return [...rs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}
