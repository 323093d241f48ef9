/**
 * Deterministic training batches: any peer holding the same token stream reproduces batch k of data pass e from
 * (seed, batchSize B, seq T) alone. A data pass is one shuffled sweep over the stream (the word "epoch" is kept
 * for the settlement period). Browser-safe.
 *
 * The algorithm, exactly (so another implementation can match it bit for bit). Integers are unsigned
 * 32-bit where it says u32; `imul` is the low 32 bits of the product.
 *   N = stream length, W = floor(N / T) − 1 windows per pass (requires N ≥ 2T), P = floor(W / B) batches
 *   per pass (requires W ≥ B).
 *   fmix32(h): h ^= h >>> 16; h = imul(h, 0x85ebca6b); h ^= h >>> 13; h = imul(h, 0xc2b2ae35); h ^= h >>> 16
 *   passSeed = fmix32(seed ^ imul(pass + 1, 0x9e3779b9))            (seed, pass: u32)
 *   rng = mulberry32(passSeed), as src/ops/rng.ts `Rng`:
 *     next(): s = s + 0x6d2b79f5; t = imul(s ^ (s >>> 15), s | 1); t ^= t + imul(t ^ (t >>> 7), t | 61);
 *             return ((t ^ (t >>> 14)) as u32) / 2^32                (a float64 in [0, 1))
 *     int(n) = floor(next() · n)                                      (float64 product)
 *   shift = rng.int(T)                                                (the pass's window phase, 0 … T−1)
 *   perm = [0, 1, …, W−1]; for i = W−1 down to 1: j = rng.int(i + 1); swap perm[i], perm[j]
 *   batch k (0 ≤ k < P), row b (0 ≤ b < B): start = shift + perm[k·B + b] · T
 *     ids[b·T + t] = stream[start + t], targets[b·T + t] = stream[start + t + 1]   (t = 0 … T−1)
 * Windows do not overlap within a pass; each pass has its own order and phase, and the W − P·B windows
 * left over are skipped that pass. Global step s is batch (s mod P) of pass floor(s / P).
 *
 * Validation (`validationBatches`): no randomness. Wv = floor((N − 1) / T) windows starting at i·T;
 * with a cap of M batches, the windows idx_j = floor(j · Wv / C) for j = 0 … C−1, C = min(Wv, M·B) rounded
 * down to a multiple of B; batches take them in order, B at a time.
 */
import { Rng } from '../ops/rng.ts';
import { BatchError } from './errors.ts';

export type TokenStream = Int32Array | Uint16Array | Uint32Array | readonly number[];

export interface Batch {
  /** Input ids, row-major [B, T]. */
  ids: Int32Array;
  /** Next-token targets, row-major [B, T]: targets[i] is the stream token after ids[i]. */
  targets: Int32Array;
  batchSize: number;
  seq: number;
}

export interface BatchSpec {
  /** u32 seed shared by all peers of a run. */
  seed: number;
  batchSize: number;
  seq: number;
}

export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function passSeed(seed: number, pass: number): number {
  return fmix32((seed ^ Math.imul(pass + 1, 0x9e3779b9)) >>> 0);
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new BatchError(`${name} must be an integer in 0…2^32−1, got ${v}`);
}

function checkPositive(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new BatchError(`${name} must be a positive integer, got ${v}`);
}

function fill(stream: TokenStream, starts: ArrayLike<number>, seq: number): Batch {
  const B = starts.length;
  const ids = new Int32Array(B * seq);
  const targets = new Int32Array(B * seq);
  for (let b = 0; b < B; b++) {
    const s = starts[b];
    for (let t = 0; t < seq; t++) {
      ids[b * seq + t] = stream[s + t];
      targets[b * seq + t] = stream[s + t + 1];
    }
  }
  return { ids, targets, batchSize: B, seq };
}

/** Serves the batches of one stream; caches the permutation of the last pass asked for. */
export class BatchSampler {
  readonly stream: TokenStream;
  readonly seed: number;
  readonly batchSize: number;
  readonly seq: number;
  /** Windows per pass (W). */
  readonly windows: number;
  /** Batches per pass (P). */
  readonly batchesPerPass: number;
  private cachedPass = -1;
  private shift = 0;
  private perm = new Int32Array(0);

  constructor(stream: TokenStream, spec: BatchSpec) {
    checkU32('seed', spec.seed);
    checkPositive('batchSize', spec.batchSize);
    checkPositive('seq', spec.seq);
    const n = stream.length;
    if (n < 2 * spec.seq) {
      throw new BatchError(
        `seq ${spec.seq} is too long for a stream of ${n} tokens (need at least 2·seq = ${2 * spec.seq})`,
      );
    }
    this.stream = stream;
    this.seed = spec.seed;
    this.batchSize = spec.batchSize;
    this.seq = spec.seq;
    this.windows = Math.floor(n / spec.seq) - 1;
    this.batchesPerPass = Math.floor(this.windows / spec.batchSize);
    if (this.batchesPerPass < 1) {
      throw new BatchError(
        `batchSize ${spec.batchSize} needs ${spec.batchSize} windows of ${spec.seq} tokens; the stream of ${n} ` +
          `tokens has ${this.windows}`,
      );
    }
  }

  /** Phase and window order of an pass (see the algorithm above). */
  passOrder(pass: number): { shift: number; perm: Int32Array } {
    checkU32('pass', pass);
    if (pass !== this.cachedPass) {
      const rng = new Rng(passSeed(this.seed, pass));
      this.shift = rng.int(this.seq);
      const perm = new Int32Array(this.windows);
      for (let i = 0; i < perm.length; i++) perm[i] = i;
      for (let i = perm.length - 1; i >= 1; i--) {
        const j = rng.int(i + 1);
        const t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
      }
      this.perm = perm;
      this.cachedPass = pass;
    }
    return { shift: this.shift, perm: this.perm };
  }

  /** Stream offsets of the rows of batch `index` of `pass`. */
  starts(pass: number, index: number): Int32Array {
    if (!Number.isInteger(index) || index < 0 || index >= this.batchesPerPass) {
      throw new BatchError(
        `batch index must be an integer in 0…${this.batchesPerPass - 1} (batches per pass), got ${index}`,
      );
    }
    const { shift, perm } = this.passOrder(pass);
    const out = new Int32Array(this.batchSize);
    for (let b = 0; b < this.batchSize; b++) out[b] = shift + perm[index * this.batchSize + b] * this.seq;
    return out;
  }

  batch(pass: number, index: number): Batch {
    return fill(this.stream, this.starts(pass, index), this.seq);
  }

  /** Batch of global step `step` (passes follow each other). */
  step(step: number): Batch & { pass: number; index: number } {
    if (!Number.isInteger(step) || step < 0) throw new BatchError(`step must be a non-negative integer, got ${step}`);
    const pass = Math.floor(step / this.batchesPerPass);
    const index = step - pass * this.batchesPerPass;
    return { ...this.batch(pass, index), pass, index };
  }
}

/** Batch `index` of `pass` (stateless form of BatchSampler; recomputes the pass's permutation). */
export function getBatch(stream: TokenStream, spec: BatchSpec & { pass: number; index: number }): Batch {
  return new BatchSampler(stream, spec).batch(spec.pass, spec.index);
}

/** The fixed evaluation batches of a (validation) stream: see the algorithm above. */
export function validationBatches(
  stream: TokenStream,
  spec: { batchSize: number; seq: number; maxBatches?: number },
): Batch[] {
  checkPositive('batchSize', spec.batchSize);
  checkPositive('seq', spec.seq);
  if (spec.maxBatches !== undefined) checkPositive('maxBatches', spec.maxBatches);
  const { batchSize: B, seq: T } = spec;
  const n = stream.length;
  if (n < T + 1)
    throw new BatchError(`seq ${T} is too long for a stream of ${n} tokens (need at least seq + 1 = ${T + 1})`);
  const wv = Math.floor((n - 1) / T);
  let count = Math.min(wv, (spec.maxBatches ?? Infinity) * B);
  count -= count % B;
  if (count < B)
    throw new BatchError(`batchSize ${B} needs ${B} windows of ${T} tokens; the stream of ${n} tokens has ${wv}`);
  const out: Batch[] = [];
  const starts = new Int32Array(B);
  for (let j0 = 0; j0 < count; j0 += B) {
    for (let b = 0; b < B; b++) starts[b] = Math.floor(((j0 + b) * wv) / count) * T;
    out.push(fill(stream, starts, T));
  }
  return out;
}
