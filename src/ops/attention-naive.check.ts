import type { Gpu } from '../gpu/index.ts';
import { expectClose, type CheckSize } from './check-kit.ts';
import type { Comparison } from './compare.ts';
import { ATTENTION_TOL, attentionInputs, shapeLabel, type AttentionShape } from './attention.check.ts';
import { attentionNaive, attentionNaiveBackward } from './attention-naive.ts';
import { attentionBackwardRef, attentionRef } from './attention.ref.ts';

/**
 * The plain attention kernel against the float64 reference the FlashAttention-2 kernel is checked against,
 * with the same tolerance (ATTENTION_TOL: float32 sums of up to T softmax-weighted terms, errors ~1e-6).
 */
const FULL: AttentionShape[] = [
  [1, 1, 1, 8], // T = 1: a single key
  [2, 7, 2, 16],
  [3, 45, 3, 8], // T not a multiple of the workgroup
  [2, 130, 2, 8], // more rows than a workgroup per (b, h)
  [2, 45, 1, 64],
  [2, 9, 2, 6], // D not a multiple of 4
];

const SMALL: AttentionShape[] = [
  [1, 1, 1, 8],
  [2, 7, 2, 8],
  [1, 13, 2, 6],
];

async function checkShape(gpu: Gpu, shape: AttentionShape, seed: number): Promise<Comparison[]> {
  const [B, T, H, D] = shape;
  const { qkv, dout, dims } = attentionInputs(shape, seed);
  const ref = attentionRef(qkv, dims);
  const dref = attentionBackwardRef(qkv, dout, dims);
  const q = gpu.upload(qkv, [B * T, 3 * H * D]);
  const dt = gpu.upload(dout, [B * T, H * D]);
  const { out, lse } = attentionNaive(gpu, q, dims);
  const dqkv = attentionNaiveBackward(gpu, q, out, dt, lse, dims);
  const tag = shapeLabel(shape);
  const results = [
    await expectClose(gpu, `attentionNaive.dqkv ${tag}`, dqkv, dref, ATTENTION_TOL),
    await expectClose(gpu, `attentionNaive.out ${tag}`, out, ref.out, ATTENTION_TOL),
    await expectClose(gpu, `attentionNaive.lse ${tag}`, lse, ref.lse, ATTENTION_TOL),
  ];
  gpu.release(q, dt);
  return results;
}

export async function checkAttentionNaive(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const results: Comparison[] = [];
  for (const [i, shape] of (size === 'small' ? SMALL : FULL).entries())
    results.push(...(await checkShape(gpu, shape, 200 + i)));
  return results;
}
