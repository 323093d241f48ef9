/** float64 reference for token + position embedding (GPT-2), forward and backward. */

/** x[b·T + t, :] = wte[ids[b·T + t], :] + wpe[t, :]; wte [V, c], wpe [≥T, c]. */
export function embeddingRef(
  ids: ArrayLike<number>,
  wte: ArrayLike<number>,
  wpe: ArrayLike<number>,
  batch: number,
  seq: number,
  c: number,
): Float64Array {
  const x = new Float64Array(batch * seq * c);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seq; t++) {
      const p = b * seq + t;
      for (let i = 0; i < c; i++) x[p * c + i] = wte[ids[p] * c + i] + wpe[t * c + i];
    }
  }
  return x;
}

/** dwte [vocab, c] accumulates dx rows by token id (repeats add up); dwpe [seq, c] sums dx over the batch. */
export function embeddingBackwardRef(
  dx: ArrayLike<number>,
  ids: ArrayLike<number>,
  vocab: number,
  batch: number,
  seq: number,
  c: number,
): { dwte: Float64Array; dwpe: Float64Array } {
  const dwte = new Float64Array(vocab * c);
  const dwpe = new Float64Array(seq * c);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seq; t++) {
      const p = b * seq + t;
      for (let i = 0; i < c; i++) {
        dwte[ids[p] * c + i] += dx[p * c + i];
        dwpe[t * c + i] += dx[p * c + i];
      }
    }
  }
  return { dwte, dwpe };
}
