import { compare, type Comparison, type Tolerance } from '../src/ops/compare.ts';

/**
 * Central finite differences for checking float64 reference gradients: for a scalar loss L(x),
 * dL/dx_i ≈ (L(x + h·e_i) − L(x − h·e_i)) / 2h, truncation error O(h²). In float64 with h = 1e-5 the
 * combined truncation and rounding error is ~1e-9 for O(1) losses, so FD_TOL is far below any real bug.
 */
export const FD_TOL: Tolerance = { atol: 1e-7, rtol: 1e-6 };

export function numericGradient(
  loss: (x: Float64Array) => number,
  x: Float64Array,
  indices: number[],
  h = 1e-5,
): Float64Array {
  const out = new Float64Array(indices.length);
  indices.forEach((i, k) => {
    const v = x[i];
    x[i] = v + h;
    const up = loss(x);
    x[i] = v - h;
    const down = loss(x);
    x[i] = v;
    out[k] = (up - down) / (2 * h);
  });
  return out;
}

/**
 * Compares the analytic gradient with central differences at (up to `samples`) sampled indices of x.
 * `loss` is evaluated on x as mutated in place.
 */
export function checkGradient(
  name: string,
  loss: (x: Float64Array) => number,
  x: Float64Array,
  analytic: ArrayLike<number>,
  samples = 48,
  tol: Tolerance = FD_TOL,
): Comparison {
  const idx = sampleIndices(x.length, samples);
  const numeric = numericGradient(loss, x, idx);
  return compare(
    name,
    idx.map((i) => analytic[i]),
    numeric,
    tol,
  );
}

/** A fixed random projection turns a vector output into a scalar loss: L = Σ w_i·y_i, so dL/dy = w. */
export function projection(n: number, seed: number): Float64Array {
  const w = new Float64Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    w[i] = s / 4294967296 - 0.5;
  }
  return w;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Up to `count` distinct indices in [0, n), deterministic (all of them when n ≤ count). */
export function sampleIndices(n: number, count: number, seed = 7): number[] {
  if (n <= count) return [...Array(n).keys()];
  const set = new Set<number>();
  let s = seed >>> 0;
  while (set.size < count) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    set.add(s % n);
  }
  return [...set];
}
