/**
 * Work receipts: what a peer claims to have computed, signed with its libp2p key. A receipt is worth nothing on
 * the peer's word: the coordinator checks the signature against the peer id (Ed25519 peer ids embed the
 * public key), the FLOPs against the shapes of the stage the peer was assigned, and a sampled share of them is
 * recomputed by another replica (see audit.ts and verdict.ts).
 *
 * Same code in the tab and in Node: signing goes through libp2p's PrivateKey, hashing through viem.
 */
import { peerIdFromString } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { bytesToHex, hexToBytes } from 'viem';
import { TesseraError } from '../errors.ts';
import { SKETCH_SIZE } from './sketch.ts';

/**
 * train: the forward and backward of one micro-batch in one step (FLOPs = 3 × forward);
 * audit: the forward of a sibling replica's micro-batch, recomputed to check its output hash;
 * infer: one inference hop — a stage's forward over a session's new positions, for a requester (`micro` is the
 *   requester's unit number, `step` the holder's optimizer step whose weights served it);
 * infer-audit: the same hop replayed on another replica of the stage, compared by sketch (sketch.ts).
 */
export const RECEIPT_KINDS = ['train', 'audit', 'infer', 'infer-audit'] as const;
export type ReceiptKind = (typeof RECEIPT_KINDS)[number];

export const isInferenceKind = (k: ReceiptKind): k is 'infer' | 'infer-audit' => k === 'infer' || k === 'infer-audit';

export interface WorkReceipt {
  model: string;
  /** The swarm's configuration round (its resume epoch): steps redone after a reconfiguration are new work. */
  round: number;
  stage: number;
  /** The replica that did the work (for an audit: the verifier's replica). */
  replica: number;
  /** Replicas of the stage in that round (micro-batch m belongs to replica m mod replicas). */
  replicas: number;
  step: number;
  micro: number;
  kind: ReceiptKind;
  flops: number;
  /** SHA-256 (0x hex) of the input: the received activation bytes, or the token ids at stage 0. */
  inputHash: string;
  /** SHA-256 (0x hex) of the forward output: the activation bytes sent on, or the float32 loss at the last stage. */
  outputHash: string;
  peerId: string;
  /** Inference kinds only: the output's sketch (sketch.ts), for comparison with a tolerance. */
  sketch?: number[];
  /**
   * Inference kinds only: the step of the weights the session's cache began with (`step` is this hop's). Two
   * replicas' hops compute the same thing only when both held one step's weights throughout the session.
   */
  sessionStep?: number;
}

export interface SignedReceipt extends WorkReceipt {
  /** Ed25519 signature (0x hex) over receiptBytes(receipt). */
  signature: string;
}

export class ReceiptError extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('receipt', message, options);
  }
}

const FIELDS = [
  'model',
  'round',
  'stage',
  'replica',
  'replicas',
  'step',
  'micro',
  'kind',
  'flops',
  'inputHash',
  'outputHash',
  'peerId',
] as const;
const HASH = /^0x[0-9a-f]{64}$/;
const MODEL = /^[a-z0-9][a-z0-9-]{0,63}$/;
const PEER = /^[1-9A-HJ-NP-Za-km-z]{40,128}$/;
const SIGNATURE = /^0x[0-9a-f]{128}$/;
const DOMAIN = 'tessera-receipt-v1\n';

/**
 * The signed bytes: a domain tag and the fields in a fixed order (no JSON key-order ambiguity); the sketch last, when
 * there is one.
 */
export function receiptBytes(r: WorkReceipt): Uint8Array {
  const fields: unknown[] = FIELDS.map((f) => r[f]);
  if (r.sketch) fields.push(r.sketch, r.sessionStep ?? null);
  return new TextEncoder().encode(DOMAIN + JSON.stringify(fields));
}

export async function signReceipt(key: PrivateKey, r: WorkReceipt): Promise<SignedReceipt> {
  const signature = bytesToHex(await key.sign(receiptBytes(r)));
  return { ...pick(r), signature };
}

/** Whether `signature` is the peer's own over the receipt (false for another key, a forgery or a bad peer id). */
export async function verifyReceiptSignature(r: SignedReceipt): Promise<boolean> {
  try {
    const key = peerIdFromString(r.peerId).publicKey;
    if (!key) return false;
    return await key.verify(receiptBytes(r), hexToBytes(r.signature as `0x${string}`));
  } catch {
    return false;
  }
}

const pick = (r: WorkReceipt): WorkReceipt => {
  const out = Object.fromEntries(FIELDS.map((f) => [f, r[f]])) as unknown as WorkReceipt;
  if (r.sketch) {
    out.sketch = [...r.sketch];
    out.sessionStep = r.sessionStep;
  }
  return out;
};

/**
 * Validates an untrusted JSON receipt's shape (not its signature or its claim); throws ReceiptError with the reason.
 */
export function parseReceipt(v: unknown): SignedReceipt {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ReceiptError('a receipt must be a JSON object');
  const o = v as Record<string, unknown>;
  const extra = Object.keys(o).filter(
    (k) => k !== 'signature' && k !== 'sketch' && k !== 'sessionStep' && !(FIELDS as readonly string[]).includes(k),
  );
  if (extra.length > 0) throw new ReceiptError(`unknown receipt field(s): ${extra.slice(0, 5).join(', ')}`);
  const str = (k: string, re: RegExp) => {
    if (typeof o[k] !== 'string' || !re.test(o[k] as string))
      throw new ReceiptError(`receipt ${k} must match ${re}, got ${JSON.stringify(o[k])?.slice(0, 80)}`);
    return o[k] as string;
  };
  const int = (k: string, min: number) => {
    if (typeof o[k] !== 'number' || !Number.isSafeInteger(o[k]) || (o[k] as number) < min)
      throw new ReceiptError(`receipt ${k} must be an integer ≥ ${min}, got ${JSON.stringify(o[k])}`);
    return o[k] as number;
  };
  const kind = o.kind;
  if (!(RECEIPT_KINDS as readonly unknown[]).includes(kind))
    throw new ReceiptError(`receipt kind must be one of ${RECEIPT_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
  const r: SignedReceipt = {
    model: str('model', MODEL),
    round: int('round', 0),
    stage: int('stage', 0),
    replica: int('replica', 0),
    replicas: int('replicas', 1),
    step: int('step', 0),
    micro: int('micro', 0),
    kind: kind as ReceiptKind,
    flops: int('flops', 1),
    inputHash: str('inputHash', HASH),
    outputHash: str('outputHash', HASH),
    peerId: str('peerId', PEER),
    signature: str('signature', SIGNATURE),
  };
  if (r.replica >= r.replicas) throw new ReceiptError(`receipt replica ${r.replica} of only ${r.replicas}`);
  if (isInferenceKind(r.kind)) {
    const sk = o.sketch;
    if (
      !Array.isArray(sk) ||
      sk.length !== SKETCH_SIZE ||
      !sk.every((x) => typeof x === 'number' && Number.isFinite(x))
    ) {
      throw new ReceiptError(`an ${r.kind} receipt needs a sketch of ${SKETCH_SIZE} finite numbers`);
    }
    const ss = o.sessionStep;
    // (It may exceed step: a rolled-back swarm resumes at an earlier step while a session's cache is newer.)
    if (typeof ss !== 'number' || !Number.isSafeInteger(ss) || ss < 0)
      throw new ReceiptError(`an ${r.kind} receipt needs its session's weights step, an integer ≥ 0`);
    return { ...r, sketch: [...(sk as number[])], sessionStep: ss };
  }
  if (o.sketch !== undefined || o.sessionStep !== undefined)
    throw new ReceiptError(`a ${r.kind} receipt has no sketch or session step`);
  // A train receipt is the owner's micro-batch; an audit is a sibling's (never its own: that checks nothing).
  const owner = r.micro % r.replicas;
  if (r.kind === 'train' && owner !== r.replica)
    throw new ReceiptError(`micro-batch ${r.micro} belongs to replica ${owner}, not ${r.replica}`);
  if (r.kind === 'audit' && owner === r.replica)
    throw new ReceiptError(`replica ${r.replica} cannot audit its own micro-batch ${r.micro}`);
  return r;
}

/** The unit of work a receipt is about: audits and the train receipt they check share it. */
export function unitKey(r: Pick<WorkReceipt, 'model' | 'round' | 'stage' | 'step' | 'micro'>): string {
  return `${r.model}/${r.round}/${r.stage}/${r.step}/${r.micro}`;
}

/** An inference hop's unit: the requester numbers hops (micro), whoever serves them and at whatever step. */
export function inferUnitKey(r: Pick<WorkReceipt, 'model' | 'stage' | 'micro'>): string {
  return `${r.model}/infer/${r.stage}/${r.micro}`;
}
