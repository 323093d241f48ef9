/**
 * A compact, signed summary of an inference output, so that two replicas' forwards of the same input can be
 * compared from their receipts alone — with a tolerance, since peers may run different runtimes (WGSL,
 * onnxruntime) whose float32 results differ in the last bits, which rules out comparing hashes.
 *
 * The sketch is SKETCH_SIZE random projections of the output vector, x·r_k / √n with r_k ∈ {−1, +1}ⁿ drawn from
 * a seed (the unit's key): honest outputs that agree to float32 rounding give sketches that agree to about
 * 1e-6 of their scale, and an output that is wrong by more than noise moves every projection by O(its error),
 * so it is caught unless it lies in the null space of eight seeded ±1 vectors — which a cheater cannot aim for
 * without knowing the right output, i.e. without doing the work. The requester checks each sketch against the
 * bytes it actually received, so a receipt cannot describe an output other than the one sent.
 */
import { Rng } from '../ops/rng.ts';

export const SKETCH_SIZE = 8;
/** Relative disagreement tolerated between two sketches of the same unit (runtimes differ by ~1e-6). */
export const SKETCH_TOLERANCE = 1e-3;

/** FNV-1a of the seed string: the projections' RNG seed. */
function seedOf(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The sketch of `values` under `seed`, each projection rounded to float32 (stable through JSON). */
export function sketchOf(values: ArrayLike<number>, seed: string): number[] {
  const rng = new Rng(seedOf(seed));
  const out = new Float64Array(SKETCH_SIZE);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const bits = Math.floor(rng.next() * 4294967296); // one draw gives the eight signs of this element
    for (let k = 0; k < SKETCH_SIZE; k++) out[k] += (bits >>> k) & 1 ? v : -v;
  }
  const scale = 1 / Math.sqrt(Math.max(1, values.length));
  return Array.from(out, (x) => Math.fround(x * scale));
}

/** Whether two sketches describe the same output up to float32 noise. */
export function sketchesAgree(a: readonly number[], b: readonly number[], tolerance = SKETCH_TOLERANCE): boolean {
  if (a.length !== SKETCH_SIZE || b.length !== SKETCH_SIZE) return false;
  return a.every((x, k) => Math.abs(x - b[k]) <= tolerance * Math.max(1, Math.abs(x), Math.abs(b[k])));
}
