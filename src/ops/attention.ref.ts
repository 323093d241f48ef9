/**
 * float64 reference for causal multi-head attention, forward and backward, written for clarity: it
 * materialises the T×T probabilities per head (fine at test sizes; the kernels never do).
 *
 * Layout (the model's convention): qkv is [B·T, 3C] row-major, columns [0,C) = q, [C,2C) = k, [2C,3C) = v;
 * head j uses columns j·D..(j+1)·D of each, D = C/H. out is [B·T, C] with head j in columns j·D..(j+1)·D.
 * lse is [B·H·T] (index (b·H + h)·T + t): the log-sum-exp of the scaled scores of each query row.
 */
export interface AttentionRefDims {
  batch: number;
  seq: number;
  heads: number;
}

interface Layout {
  B: number;
  T: number;
  H: number;
  C: number;
  D: number;
  scale: number;
}

function layout(qkvLength: number, dims: AttentionRefDims): Layout {
  const { batch: B, seq: T, heads: H } = dims;
  const C = qkvLength / (B * T * 3);
  if (!Number.isInteger(C) || C % H !== 0)
    throw new Error(`attentionRef: ${qkvLength} values do not fit [${B}·${T}, 3·C] with C divisible by ${H}`);
  const D = C / H;
  return { B, T, H, C, D, scale: 1 / Math.sqrt(D) };
}

/** Index of element d of the q (part 0), k (1) or v (2) vector of token t, head h, sequence b. */
function at(L: Layout, part: number, b: number, t: number, h: number, d: number): number {
  return (b * L.T + t) * 3 * L.C + part * L.C + h * L.D + d;
}

/** Causal softmax probabilities P[i][j] (j ≤ i) of one (b, h), and each row's log-sum-exp. */
function probabilities(
  qkv: ArrayLike<number>,
  L: Layout,
  b: number,
  h: number,
): { P: Float64Array[]; lse: Float64Array } {
  const P: Float64Array[] = [];
  const lse = new Float64Array(L.T);
  for (let i = 0; i < L.T; i++) {
    const s = new Float64Array(i + 1);
    for (let j = 0; j <= i; j++) {
      let dot = 0;
      for (let d = 0; d < L.D; d++) dot += qkv[at(L, 0, b, i, h, d)] * qkv[at(L, 1, b, j, h, d)];
      s[j] = dot * L.scale;
    }
    const m = Math.max(...s);
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += Math.exp(s[j] - m);
    lse[i] = m + Math.log(sum);
    P.push(s.map((v) => Math.exp(v - lse[i])));
  }
  return { P, lse };
}

export function attentionRef(qkv: ArrayLike<number>, dims: AttentionRefDims): { out: Float64Array; lse: Float64Array } {
  const L = layout(qkv.length, dims);
  const out = new Float64Array(L.B * L.T * L.C);
  const lse = new Float64Array(L.B * L.H * L.T);
  for (let b = 0; b < L.B; b++) {
    for (let h = 0; h < L.H; h++) {
      const { P, lse: rowLse } = probabilities(qkv, L, b, h);
      lse.set(rowLse, (b * L.H + h) * L.T);
      for (let i = 0; i < L.T; i++) {
        for (let d = 0; d < L.D; d++) {
          let o = 0;
          for (let j = 0; j <= i; j++) o += P[i][j] * qkv[at(L, 2, b, j, h, d)];
          out[(b * L.T + i) * L.C + h * L.D + d] = o;
        }
      }
    }
  }
  return { out, lse };
}

/**
 * dqkv for upstream gradient dout ([B·T, C]). With S = scale·QKᵀ (causal), P = softmax(S), O = PV:
 * dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − rowsum(dP ∘ P)), dQ = scale·dS K, dK = scale·dSᵀ Q.
 */
export function attentionBackwardRef(
  qkv: ArrayLike<number>,
  dout: ArrayLike<number>,
  dims: AttentionRefDims,
): Float64Array {
  const L = layout(qkv.length, dims);
  const dqkv = new Float64Array(qkv.length);
  const dO = (b: number, t: number, h: number, d: number) => dout[(b * L.T + t) * L.C + h * L.D + d];
  for (let b = 0; b < L.B; b++) {
    for (let h = 0; h < L.H; h++) {
      const { P } = probabilities(qkv, L, b, h);
      for (let i = 0; i < L.T; i++) {
        const dP = new Float64Array(i + 1);
        let rowsum = 0;
        for (let j = 0; j <= i; j++) {
          for (let d = 0; d < L.D; d++) dP[j] += dO(b, i, h, d) * qkv[at(L, 2, b, j, h, d)];
          rowsum += dP[j] * P[i][j];
        }
        for (let j = 0; j <= i; j++) {
          const dS = P[i][j] * (dP[j] - rowsum);
          for (let d = 0; d < L.D; d++) {
            dqkv[at(L, 0, b, i, h, d)] += L.scale * dS * qkv[at(L, 1, b, j, h, d)];
            dqkv[at(L, 1, b, j, h, d)] += L.scale * dS * qkv[at(L, 0, b, i, h, d)];
            dqkv[at(L, 2, b, j, h, d)] += P[i][j] * dO(b, i, h, d);
          }
        }
      }
    }
  }
  return dqkv;
}
