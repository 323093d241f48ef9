/** float64 reference for softmax cross-entropy with an ignore index, forward and backward. */

export interface CrossEntropyRefOut {
  /** Per-row loss, 0 where ignored. */
  losses: Float64Array;
  /** Mean over non-ignored rows (0 if none). */
  loss: number;
  /** d loss / d logits = (softmax − onehot)/count, zero rows where ignored. */
  dlogits: Float64Array;
  count: number;
}

/** logits [n, v] row-major; targets [n] in [0, v) or equal to ignoreIndex. */
export function crossEntropyRef(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  n: number,
  v: number,
  ignoreIndex = -1,
): CrossEntropyRefOut {
  const losses = new Float64Array(n);
  const dlogits = new Float64Array(n * v);
  let count = 0;
  for (let r = 0; r < n; r++) if (targets[r] !== ignoreIndex) count++;
  let total = 0;
  for (let r = 0; r < n; r++) {
    const t = targets[r];
    if (t === ignoreIndex) continue;
    if (!(t >= 0 && t < v)) throw new RangeError(`crossEntropyRef: target ${t} of row ${r} outside [0, ${v})`);
    let m = -Infinity;
    for (let i = 0; i < v; i++) m = Math.max(m, logits[r * v + i]);
    let s = 0;
    for (let i = 0; i < v; i++) s += Math.exp(logits[r * v + i] - m);
    const lse = m + Math.log(s);
    losses[r] = lse - logits[r * v + t];
    total += losses[r];
    for (let i = 0; i < v; i++) dlogits[r * v + i] = (Math.exp(logits[r * v + i] - lse) - (i === t ? 1 : 0)) / count;
  }
  return { losses, loss: count > 0 ? total / count : 0, dlogits, count };
}
