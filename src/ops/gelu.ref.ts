/** float64 reference for GELU (tanh approximation), forward and backward. */
const K0 = Math.sqrt(2 / Math.PI);
const K1 = 0.044715;

export function geluRef(x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    y[i] = 0.5 * v * (1 + Math.tanh(K0 * (v + K1 * v ** 3)));
  }
  return y;
}

export function geluBackwardRef(x: ArrayLike<number>, dy: ArrayLike<number>): Float64Array {
  const dx = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const t = Math.tanh(K0 * (v + K1 * v ** 3));
    dx[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * K0 * (1 + 3 * K1 * v * v));
  }
  return dx;
}
