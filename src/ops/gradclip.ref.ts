/** float64 reference for global gradient-norm clipping. */

/** ‖(g₁, g₂, …)‖₂ over all elements of all tensors. */
export function gradNormRef(grads: ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/** ∂‖g‖/∂g = g / ‖g‖ (undefined at g = 0; returned as 0 there, the minimum-norm subgradient). */
export function gradNormBackwardRef(grads: ArrayLike<number>[]): Float64Array[] {
  const norm = gradNormRef(grads);
  return grads.map((g) => Float64Array.from(g, (v) => (norm === 0 ? 0 : v / norm)));
}

/** scale = min(1, maxNorm / (norm + 1e-6)); 0 when the norm is NaN or ±Inf (the update is then skipped). */
export function clipScaleRef(norm: number, maxNorm: number): number {
  return Number.isFinite(norm) ? Math.min(1, maxNorm / (norm + 1e-6)) : 0;
}

export function scaleRef(t: ArrayLike<number>, scale: number): Float64Array {
  return Float64Array.from(t, (v) => v * scale);
}
