import { Rng } from '../ops/rng.ts';
import { CodecError } from './codec.ts';

/** What determines a subspace basis: every peer with the same parameters derives the same U and E_fixed. */
export interface BasisParams {
  seed: number;
  /** Dimension of the shared subspace (coefficients per token). */
  k: number;
  vocab: number;
  /** The residual-stream width C (dModel). */
  width: number;
  /** Standard deviation of the fixed token table E_fixed (default 0.02, as GPT-2's wte init). */
  embedStd?: number;
}

/**
 * The shared state of the subspace codec (Pluralis' Protocol Models): an orthonormal basis U [C,k] and a fixed
 * token-embedding table E_fixed [V,C]. Neither travels: both are pure functions of BasisParams.
 */
export class SubspaceBasis {
  readonly seed: number;
  readonly k: number;
  readonly vocab: number;
  readonly width: number;
  readonly embedStd: number;
  /** U [C,k] row-major, orthonormal columns, float64. */
  readonly U: Float64Array;
  /** U rounded to float32, [C,k] row-major: what the GPU projections use. */
  readonly U32: Float32Array;
  /** E_fixed [V,C] row-major. Defined as float32 values so that sender and receiver add identical numbers. */
  readonly E: Float32Array;
  private perp?: Float32Array;

  constructor(p: BasisParams) {
    const { seed, k, vocab, width } = p;
    const embedStd = p.embedStd ?? 0.02;
    if (!Number.isInteger(seed)) throw new CodecError(`subspace basis: seed must be an integer, got ${seed}`);
    if (!Number.isInteger(width) || width < 1)
      throw new CodecError(`subspace basis: width must be a positive integer, got ${width}`);
    if (!Number.isInteger(k) || k < 1 || k > width)
      throw new CodecError(`subspace basis: k must be an integer in [1, ${width}], got ${k}`);
    if (!Number.isInteger(vocab) || vocab < 1)
      throw new CodecError(`subspace basis: vocab must be a positive integer, got ${vocab}`);
    if (!(Number.isFinite(embedStd) && embedStd >= 0))
      throw new CodecError(`subspace basis: embedStd must be finite and ≥ 0, got ${embedStd}`);
    this.seed = seed;
    this.k = k;
    this.vocab = vocab;
    this.width = width;
    this.embedStd = embedStd;
    this.U = orthonormalBasis(new Rng(streamSeed(seed, 1)), width, k);
    this.U32 = Float32Array.from(this.U);
    const rng = new Rng(streamSeed(seed, 2));
    this.E = new Float32Array(vocab * width);
    for (let i = 0; i < this.E.length; i++) this.E[i] = gaussian(rng) * embedStd;
  }

  /**
   * (I − P)·E_fixed per row, P = U·Uᵀ, computed in float64 and rounded once: wte = wte·P + E_perp keeps wte − E_fixed
   * in span(U).
   */
  get Eperp(): Float32Array {
    if (!this.perp) {
      const { U, E, k, width: C, vocab: V } = this;
      const out = new Float32Array(V * C);
      const c = new Float64Array(k);
      for (let r = 0; r < V; r++) {
        projectCoefficients(U, E, r * C, C, k, c, undefined);
        for (let i = 0; i < C; i++) {
          let s = 0;
          for (let j = 0; j < k; j++) s += U[i * k + j] * c[j];
          out[r * C + i] = E[r * C + i] - s;
        }
      }
      this.perp = out;
    }
    return this.perp;
  }

  /** P = U·Uᵀ [C,C] in float64 (for tests and diagnostics). */
  projector(): Float64Array {
    const { U, k, width: C } = this;
    const P = new Float64Array(C * C);
    for (let i = 0; i < C; i++) {
      for (let j = 0; j < C; j++) {
        let s = 0;
        for (let t = 0; t < k; t++) s += U[i * k + t] * U[j * k + t];
        P[i * C + j] = s;
      }
    }
    return P;
  }
}

/**
 * c = Uᵀ(x[off..off+C] − e[off..]) in float64 (e omitted: c = Uᵀx). Shared by the codec and Eperp so that both
 * sum in the same order.
 */
export function projectCoefficients(
  U: Float64Array,
  x: ArrayLike<number>,
  off: number,
  C: number,
  k: number,
  c: Float64Array,
  e: ArrayLike<number> | undefined,
  eOff = 0,
): void {
  c.fill(0);
  for (let i = 0; i < C; i++) {
    const d = e ? x[off + i] - e[eOff + i] : x[off + i];
    if (d === 0) continue;
    const row = i * k;
    for (let j = 0; j < k; j++) c[j] += U[row + j] * d;
  }
}

function streamSeed(seed: number, stream: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(stream, 0x85ebca6b) ^ 0x5bd1e995) >>> 0;
}

/**
 * An approximately standard normal number (Irwin–Hall: sum of 12 uniforms − 6). Unlike Box–Muller it uses
 * no Math.log/Math.cos, whose last bit may differ between JavaScript engines: mulberry32, division by 2³² and
 * float64 additions are exact IEEE operations, so a browser peer and a Node peer derive bit-identical U and
 * E_fixed, and the subspace codec's reconstruction does not depend on who decodes.
 */
function gaussian(rng: Rng): number {
  let s = 0;
  for (let i = 0; i < 12; i++) s += rng.next();
  return s - 6;
}

/**
 * k orthonormal columns in R^C from a seeded Gaussian matrix, by modified Gram–Schmidt run twice ("twice is
 * enough": the second pass removes the loss of orthogonality of the first), in float64. Only +, −, ×, ÷ and
 * sqrt are used: all correctly rounded, hence reproducible on every engine.
 */
function orthonormalBasis(rng: Rng, C: number, k: number): Float64Array {
  const cols: Float64Array[] = [];
  for (let j = 0; j < k; j++) {
    const v = new Float64Array(C);
    for (let i = 0; i < C; i++) v[i] = gaussian(rng);
    for (let pass = 0; pass < 2; pass++) {
      for (const q of cols) {
        let d = 0;
        for (let i = 0; i < C; i++) d += q[i] * v[i];
        for (let i = 0; i < C; i++) v[i] -= d * q[i];
      }
    }
    let n = 0;
    for (let i = 0; i < C; i++) n += v[i] * v[i];
    n = Math.sqrt(n);
    // A Gaussian vector lies in a fixed (j<C)-dimensional span with probability 0; this only guards bugs.
    if (!(n > 1e-8)) throw new CodecError(`subspace basis: column ${j} is degenerate (norm ${n})`);
    for (let i = 0; i < C; i++) v[i] /= n;
    cols.push(v);
  }
  const U = new Float64Array(C * k);
  for (let j = 0; j < k; j++) for (let i = 0; i < C; i++) U[i * k + j] = cols[j][i];
  return U;
}

const cache = new Map<string, SubspaceBasis>();
const CACHE_MAX = 8;

/** The basis for `p`, built once per process (E_fixed is V·C numbers; every codec and stage shares it). */
export function makeBasis(p: BasisParams): SubspaceBasis {
  const key = `${p.seed}|${p.k}|${p.vocab}|${p.width}|${p.embedStd ?? 0.02}`;
  let b = cache.get(key);
  if (!b) {
    b = new SubspaceBasis(p);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(key, b);
  }
  return b;
}
