/**
 * float64 reference for attention over a KV cache, written for clarity: the cache grows by the new rows'
 * k | v, then each new query row i (position past + i) attends over positions 0 .. past + i with an exact
 * softmax. Layouts as in attention-decode.ts: qkv [t, 3C], kv rows k | v [·, 2C], out [t, C], lse [H·t]
 * (index h·t + i).
 */
export interface AttentionDecodeRefDims {
  heads: number;
  /** Rows in pastKv (its first past·2C values are used). */
  past: number;
  /** C = heads · head dim. */
  channels: number;
}

export function attentionDecodeRef(
  pastKv: ArrayLike<number>,
  qkv: ArrayLike<number>,
  dims: AttentionDecodeRefDims,
): { out: Float64Array; lse: Float64Array; kv: Float64Array } {
  const { heads: H, past, channels: C } = dims;
  const D = C / H;
  const t = qkv.length / (3 * C);
  if (!Number.isInteger(D) || !Number.isInteger(t) || pastKv.length < past * 2 * C) {
    throw new Error(
      `attentionDecodeRef: qkv of ${qkv.length} values, cache of ${pastKv.length}, do not fit C ${C}, heads ` +
        `${H}, past ${past}`,
    );
  }
  const L = past + t;
  const kv = new Float64Array(L * 2 * C);
  for (let i = 0; i < past * 2 * C; i++) kv[i] = pastKv[i];
  for (let i = 0; i < t; i++) {
    for (let c = 0; c < 2 * C; c++) kv[(past + i) * 2 * C + c] = qkv[i * 3 * C + C + c];
  }
  const out = new Float64Array(t * C);
  const lse = new Float64Array(H * t);
  const scale = 1 / Math.sqrt(D);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < t; i++) {
      const n = past + i + 1;
      const s = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += qkv[i * 3 * C + h * D + d] * kv[j * 2 * C + h * D + d];
        s[j] = dot * scale;
      }
      const m = Math.max(...s);
      let sum = 0;
      for (let j = 0; j < n; j++) sum += Math.exp(s[j] - m);
      lse[h * t + i] = m + Math.log(sum);
      for (let d = 0; d < D; d++) {
        let o = 0;
        for (let j = 0; j < n; j++) o += Math.exp(s[j] - lse[h * t + i]) * kv[j * 2 * C + C + h * D + d];
        out[i * C + h * D + d] = o;
      }
    }
  }
  return { out, lse, kv };
}
