import { ArgumentError } from '../gpu/index.ts';
import { Rng } from '../ops/rng.ts';

/**
 * Next-token sampling from logits, as OpenAI-style APIs define it: temperature scales the logits (0 means
 * greedy), top-k keeps the k most likely tokens, top-p then keeps the smallest most-likely prefix whose
 * probability reaches p, and a token is drawn from what is left, renormalised. Pure TypeScript, float64,
 * and deterministic given the seed: the same seed and logits give the same tokens on every machine.
 */
export interface SamplingOptions {
  /** Softmax temperature ≥ 0; 0 picks the argmax (greedy). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 or undefined: all. */
  topK?: number;
  /** Nucleus: keep the most likely tokens until their probability reaches topP, in (0, 1]; default 1 (all). */
  topP?: number;
  /** Seed of the draws; default: a random one (Sampler.seed reports it, so a generation can be replayed). */
  seed?: number;
}

/**
 * The candidates sampling draws from: token ids, most likely first (ties: lower id first), and their renormalised
 * probabilities.
 */
export interface Candidates {
  ids: Int32Array;
  probs: Float64Array;
}

function validate(opts: SamplingOptions): void {
  const { temperature = 1, topK = 0, topP = 1 } = opts;
  if (!(temperature >= 0) || !Number.isFinite(temperature))
    throw new ArgumentError(`sampling: temperature must be a finite number ≥ 0, got ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0)
    throw new ArgumentError(`sampling: topK must be an integer ≥ 0, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new ArgumentError(`sampling: topP must be in (0, 1], got ${topP}`);
}

function checkLogits(logits: ArrayLike<number>): void {
  if (logits.length < 1) throw new ArgumentError('sampling: no logits');
  let finite = false;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v) || v === Infinity) throw new ArgumentError(`sampling: logit ${i} is ${v}`);
    if (v !== -Infinity) finite = true;
  }
  if (!finite) throw new ArgumentError('sampling: every logit is −∞');
}

/** Index of the largest logit, the lowest index on ties. */
export function greedy(logits: ArrayLike<number>): number {
  checkLogits(logits);
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** The filtered, renormalised distribution a draw uses (temperature > 0). */
export function candidates(logits: ArrayLike<number>, opts: SamplingOptions = {}): Candidates {
  validate(opts);
  checkLogits(logits);
  const { temperature = 1, topK = 0, topP = 1 } = opts;
  if (temperature === 0) return { ids: Int32Array.of(greedy(logits)), probs: Float64Array.of(1) };
  const order = Array.from({ length: logits.length }, (_, i) => i);
  order.sort((a, b) => logits[b] - logits[a] || a - b);
  let n = topK > 0 ? Math.min(topK, order.length) : order.length;
  // Softmax over the kept tokens, relative to the largest (exact 1 for it: no overflow, and as T → 0 the
  // others underflow to 0, so sampling tends to greedy).
  const max = logits[order[0]];
  const w = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) {
    w[r] = Math.exp((logits[order[r]] - max) / temperature);
    total += w[r];
  }
  if (topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < n) {
      cum += w[keep++] / total;
      if (cum >= topP) break;
    }
    n = keep;
    total = 0;
    for (let r = 0; r < n; r++) total += w[r];
  }
  // Tokens with probability 0 (−∞ logits, or underflow) are never drawn: drop them from the tail.
  while (n > 1 && w[n - 1] === 0) n--;
  const probs = new Float64Array(n);
  for (let r = 0; r < n; r++) probs[r] = w[r] / total;
  return { ids: Int32Array.from(order.slice(0, n)), probs };
}

/** Draws a token with u ∈ [0, 1) (inverse CDF over the candidates, most likely first). */
export function sample(logits: ArrayLike<number>, opts: SamplingOptions, u: number): number {
  if (!(u >= 0 && u < 1)) throw new ArgumentError(`sampling: u must be in [0, 1), got ${u}`);
  const { ids, probs } = candidates(logits, opts);
  let cum = 0;
  for (let r = 0; r < ids.length; r++) {
    cum += probs[r];
    if (u < cum) return ids[r];
  }
  return ids[ids.length - 1]; // rounding left cum just under 1
}

/**
 * A seeded stream of draws for one generation: next(logits) consumes exactly one random number per token
 * (greedy included), so a replay with the same seed and logits gives the same tokens.
 */
export class Sampler {
  readonly opts: Readonly<SamplingOptions>;
  readonly seed: number;
  private readonly rng: Rng;

  constructor(opts: SamplingOptions = {}) {
    validate(opts);
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32)
      throw new ArgumentError(`sampling: seed must be an integer in [0, 2³²), got ${seed}`);
    this.opts = { ...opts };
    this.seed = seed;
    this.rng = new Rng(seed);
  }

  next(logits: ArrayLike<number>): number {
    return sample(logits, this.opts, this.rng.next());
  }
}
