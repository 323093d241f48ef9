/**
 * Receipts of inference hops (issue 7, point 4): a stage holder signs, for each hop it serves, what came in
 * (SHA-256 of the token ids or activation bytes), what went out (SHA-256 of the float32 output: activations, or
 * the logits row at the last stage) and a sketch of that output (src/ledger/sketch.ts); the requester checks
 * the hashes and sketch against the bytes it sent and received, then records the receipt (the ledger credits
 * its FLOPs). A hop the requester also replayed on another replica is compared by sketch at settlement.
 */
import type { PrivateKey } from '@libp2p/interface';
import { hashBytes } from '../train/work.ts';
import { inferUnitKey, signReceipt, type SignedReceipt, type WorkReceipt } from '../ledger/receipt.ts';
import { sketchOf } from '../ledger/sketch.ts';

/**
 * Who served a hop and where it sat in the swarm (`step`: the weights that served it; `sessionStep`: its session's
 * first).
 */
export type HopContext = Pick<WorkReceipt, 'model' | 'round' | 'stage' | 'replica' | 'replicas' | 'step' | 'peerId'> & {
  sessionStep: number;
};

export interface HopWork {
  /** The requester's number for this hop (the same for its audit replay). */
  unit: number;
  audit: boolean;
  flops: number;
  /** The request's input as it arrived: int32 token ids or float32 activations, little-endian. */
  input: Uint8Array;
  /** The hop's float32 output: activations sent on, or the last position's logits. */
  output: Float32Array;
}

export const bytesOf = (a: Int32Array | Float32Array): Uint8Array =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export function hopReceipt(key: PrivateKey, c: HopContext, w: HopWork): Promise<SignedReceipt> {
  const r = {
    model: c.model,
    round: c.round,
    stage: c.stage,
    replica: c.replica,
    replicas: c.replicas,
    step: c.step,
    micro: w.unit,
    kind: w.audit ? ('infer-audit' as const) : ('infer' as const),
    flops: w.flops,
    inputHash: hashBytes(w.input),
    outputHash: hashBytes(bytesOf(w.output)),
    peerId: c.peerId,
  };
  return signReceipt(key, { ...r, sketch: sketchOf(w.output, inferUnitKey(r)), sessionStep: c.sessionStep });
}

/**
 * The requester's check of a returned receipt against the hop it asked for: its unit and kind, the input it
 * sent and, where it received the output (all stages but the last), that output's hash and sketch. Returns the
 * reason it fails, or null. (The signature, stage and step are the ledger's to check.)
 */
export function checkHopReceipt(
  r: SignedReceipt,
  expect: { model: string; stage: number; unit: number; audit: boolean; input: Uint8Array; output?: Float32Array },
): string | null {
  if (r.model !== expect.model || r.stage !== expect.stage || r.micro !== expect.unit)
    return `receipt is for ${r.model} stage ${r.stage} unit ${r.micro}, not the hop asked for`;
  if (r.kind !== (expect.audit ? 'infer-audit' : 'infer')) return `receipt kind ${r.kind} does not match the request`;
  if (r.inputHash !== hashBytes(expect.input)) return 'receipt input hash is not of the bytes sent';
  if (expect.output) {
    if (r.outputHash !== hashBytes(bytesOf(expect.output))) return 'receipt output hash is not of the bytes received';
    const sketch = sketchOf(expect.output, inferUnitKey(r));
    if (!r.sketch || r.sketch.some((x, k) => x !== sketch[k])) return 'receipt sketch is not of the output received';
  }
  return null;
}
