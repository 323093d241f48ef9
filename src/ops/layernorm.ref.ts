/** float64 reference for LayerNorm over the last dimension (GPT-2: biased variance, eps 1e-5), forward and backward. */

export interface LayerNormRefOut {
  y: Float64Array;
  mean: Float64Array;
  rstd: Float64Array;
}

/** x is [n, c] row-major; gamma, beta [c]. */
export function layernormRef(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  n: number,
  c: number,
  eps = 1e-5,
): LayerNormRefOut {
  const y = new Float64Array(n * c);
  const mean = new Float64Array(n);
  const rstd = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let i = 0; i < c; i++) s += x[r * c + i];
    const m = s / c;
    let v = 0;
    for (let i = 0; i < c; i++) v += (x[r * c + i] - m) ** 2;
    const rs = 1 / Math.sqrt(v / c + eps);
    for (let i = 0; i < c; i++) y[r * c + i] = (x[r * c + i] - m) * rs * gamma[i] + beta[i];
    mean[r] = m;
    rstd[r] = rs;
  }
  return { y, mean, rstd };
}

/**
 * With x̂ = (x − mean)·rstd and dn = dy·γ:
 *   dx = rstd·(dn − mean_row(dn) − x̂·mean_row(dn·x̂)),  dγ = Σ_rows dy·x̂,  dβ = Σ_rows dy.
 */
export function layernormBackwardRef(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  dy: ArrayLike<number>,
  n: number,
  c: number,
  eps = 1e-5,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const zeros = new Float64Array(c);
  const { mean, rstd } = layernormRef(x, gamma, zeros, n, c, eps);
  const dx = new Float64Array(n * c);
  const dgamma = new Float64Array(c);
  const dbeta = new Float64Array(c);
  for (let r = 0; r < n; r++) {
    const xhat = (i: number) => (x[r * c + i] - mean[r]) * rstd[r];
    let a = 0;
    let b = 0;
    for (let i = 0; i < c; i++) {
      const dn = dy[r * c + i] * gamma[i];
      a += dn;
      b += dn * xhat(i);
      dgamma[i] += dy[r * c + i] * xhat(i);
      dbeta[i] += dy[r * c + i];
    }
    a /= c;
    b /= c;
    for (let i = 0; i < c; i++) dx[r * c + i] = rstd[r] * (dy[r * c + i] * gamma[i] - a - xhat(i) * b);
  }
  return { dx, dgamma, dbeta };
}
