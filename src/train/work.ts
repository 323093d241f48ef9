/**
 * What a stage worker reports of its own work, for receipts (src/ledger): each unit of work with the hashes of
 * the bytes that went in and came out. Hashes are of the bytes the neighbours see (the encoded frame payload,
 * the token ids, the float32 loss), so a receiver's input hash equals its sender's output hash and an audit by
 * another replica compares by hash: the kernels are deterministic on one device class.
 */
import { sha256 } from 'viem';
import type { ModelConfig } from '../model/config.ts';
import type { StageSpec } from '../model/stages.ts';

export interface WorkDone {
  /** Frame step (the run's base + k). */
  step: number;
  micro: number;
  /** train: forward + backward of an own micro-batch; audit: forward of a sibling's, recomputed to check it. */
  kind: 'train' | 'audit';
  inputHash: string;
  outputHash: string;
}

/** Where a worker sat when it did some work: what a receipt says besides the work itself. */
export interface WorkContext {
  model: string;
  /** The swarm's configuration round (its resume epoch). */
  round: number;
  spec: StageSpec;
  replica: number;
  replicas: number;
  cfg: ModelConfig;
  batch: number;
  seq: number;
}

/**
 * Verification by recomputation, synchronous mode only (every replica of a stage holds the same weights
 * until the step's update). A worker duplicates a `fraction` of the activations it sends to a sibling of the
 * receiving replica, chosen by its private coin, and tells each replica of the next stage which ones it must
 * recompute (a list only that replica sees); stage 0 has no sender, so its replica r recomputes a `fraction` of
 * replica r − 1's micro-batches by its own coin. The audited worker cannot tell which of its outputs are checked.
 * Every worker of a pipeline must use the same fraction (it decides which frames are expected).
 */
export interface AuditOptions {
  fraction: number;
  /** This worker's private coin in [0, 1) for (step, micro, draw); keep it unpredictable to the others. */
  coin: (step: number, micro: number, draw: number) => number;
}

/** SHA-256 of bytes as 0x hex. */
export function hashBytes(bytes: Uint8Array): string {
  return sha256(bytes);
}

export function hashIds(ids: Int32Array): string {
  return sha256(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
}

export function hashLoss(loss: number): string {
  return sha256(new Uint8Array(new Float32Array([loss]).buffer));
}

/** A coin from a secret: SHA-256(secret ‖ step ‖ micro ‖ draw) as a number in [0, 1). */
export function secretCoin(secret: Uint8Array): AuditOptions['coin'] {
  return (step, micro, draw) => {
    const tag = new Uint8Array(secret.length + 12);
    tag.set(secret);
    new DataView(tag.buffer).setUint32(secret.length, step);
    new DataView(tag.buffer).setUint32(secret.length + 4, micro);
    new DataView(tag.buffer).setUint32(secret.length + 8, draw);
    const h = sha256(tag, 'bytes');
    return new DataView(h.buffer, h.byteOffset).getUint32(0) / 2 ** 32;
  };
}
