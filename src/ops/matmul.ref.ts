/**
 * float64 reference for matmul and the linear layer, forward and backward. Row-major, written for clarity.
 *
 * C[M,N] = op(A)·op(B) (+ bias) (+ C₀ when accumulating), where op(A)[m,k] is A[m,k] (A stored [M,K]) or,
 * with transA, A[k,m] (A stored [K,M]); op(B)[k,n] is B[k,n] (B stored [K,N]) or, with transB, B[n,k]
 * (B stored [N,K]).
 */
export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  /** [N], added to every row. */
  bias?: ArrayLike<number>;
  /** [M,N]: the result is C₀ + op(A)·op(B) (+ bias). */
  accumulate?: ArrayLike<number>;
}

export function matmulRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  opts: MatmulRefOptions = {},
): Float64Array {
  const { transA = false, transB = false, bias, accumulate } = opts;
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = transA ? a[k * M + m] : a[m * K + k];
        const bv = transB ? b[n * K + k] : b[k * N + n];
        s += av * bv;
      }
      if (bias) s += bias[n];
      if (accumulate) s += accumulate[m * N + n];
      c[m * N + n] = s;
    }
  }
  return c;
}

/** db[n] = Σ_m dy[m,n]. */
export function biasGradRef(dy: ArrayLike<number>, M: number, N: number): Float64Array {
  const db = new Float64Array(N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) db[n] += dy[m * N + n];
  return db;
}

/** y[M,N] = x[M,K]·W[K,N] + b[N] (W stored [in, out], GPT-2's convention). */
export function linearForwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | undefined,
  M: number,
  K: number,
  N: number,
): Float64Array {
  return matmulRef(x, w, M, N, K, { bias: b });
}

/**
 * Gradients of L with dL/dy = dy: dx = dy·Wᵀ [M,K], dW = xᵀ·dy [K,N], db = Σ_rows dy [N].
 * (y[m,n] = Σ_k x[m,k]·W[k,n] + b[n], so ∂L/∂x[m,k] = Σ_n dy[m,n]·W[k,n] and ∂L/∂W[k,n] = Σ_m x[m,k]·dy[m,n].)
 */
export function linearBackwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  dy: ArrayLike<number>,
  M: number,
  K: number,
  N: number,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  return {
    dx: matmulRef(dy, w, M, K, N, { transB: true }),
    dw: matmulRef(x, dy, K, N, M, { transA: true }),
    db: biasGradRef(dy, M, N),
  };
}
