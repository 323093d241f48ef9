/** float64 reference for the residual add y = a + b (forward, backward) and acc += scale·x. */
export function residualAddRef(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

/** ∂(a + b)/∂a and ∂(a + b)/∂b are the identity: both gradients equal dy. */
export function residualBackwardRef(dy: ArrayLike<number>): { da: Float64Array; db: Float64Array } {
  return { da: Float64Array.from(dy), db: Float64Array.from(dy) };
}

export function addInPlaceRef(acc: ArrayLike<number>, x: ArrayLike<number>, scale = 1): Float64Array {
  const out = new Float64Array(acc.length);
  for (let i = 0; i < acc.length; i++) out[i] = acc[i] + scale * x[i];
  return out;
}
