import type { Gpu } from '../gpu/index.ts';
import { ATTENTION_TOL } from './attention.check.ts';
import { attentionDecode, chooseDecodePlan, kvAppend, type DecodeOptions } from './attention-decode.ts';
import { attentionDecodeRef } from './attention-decode.ref.ts';
import { compare, type Comparison } from './compare.ts';
import type { CheckSize } from './check-kit.ts';
import { Rng } from './rng.ts';

/** [heads, past, t (new rows), head dim]. */
export type DecodeShape = [number, number, number, number];

const FULL: DecodeShape[] = [
  [1, 0, 1, 8], // a single key
  [2, 0, 7, 16], // a first prefill chunk: plain causal attention
  [2, 13, 1, 16], // one decode token
  [3, 40, 5, 8], // a later prefill chunk
  [2, 70, 1, 6], // D not a multiple of 4
  [4, 100, 1, 32], // long enough for several splits by default
];
const SMALL: DecodeShape[] = [
  [1, 0, 1, 8],
  [2, 9, 3, 8],
  [2, 40, 1, 8],
];

/** Plans the default does not reach on small shapes: many short splits, some wholly masked for early rows. */
const FORCED: DecodeOptions[] = [{ keysPerSplit: 7 }, { keysPerSplit: 1 }];

/** Seeded inputs: the cached rows and the new rows' qkv in [−2, 2] (softmax far from uniform). */
export function attentionDecodeInputs(
  shape: DecodeShape,
  seed: number,
): { pastKv: Float32Array; qkv: Float32Array; C: number } {
  const [H, past, t, D] = shape;
  const C = H * D;
  const rng = new Rng(seed);
  return { pastKv: rng.f32(past * 2 * C, -2, 2), qkv: rng.f32(t * 3 * C, -2, 2), C };
}

async function checkShape(gpu: Gpu, shape: DecodeShape, seed: number, plans: DecodeOptions[]): Promise<Comparison[]> {
  const [H, past, t, D] = shape;
  const { pastKv, qkv, C } = attentionDecodeInputs(shape, seed);
  const ref = attentionDecodeRef(pastKv, qkv, { heads: H, past, channels: C });
  const results: Comparison[] = [];
  // Rows past the new ones hold NaN: a kernel reading beyond past + t would show it.
  const cap = past + t + 3;
  const init = new Float32Array(cap * 2 * C).fill(NaN);
  init.set(pastKv);
  const q = gpu.upload(qkv, [t, 3 * C]);
  for (const opts of plans) {
    const kv = gpu.upload(init, [cap, 2 * C]);
    const plan = chooseDecodePlan(gpu, t, { heads: H, past, headDim: D }, opts);
    const tag = `H=${H} past=${past} t=${t} D=${D} splits ${plan.splits}×${plan.keysPerSplit}`;
    kvAppend(gpu, q, kv, { heads: H, past });
    const { out, lse } = attentionDecode(gpu, q, kv, { heads: H, past }, opts);
    const [o, l, k] = [await gpu.read(out), await gpu.read(lse), await gpu.read(kv)];
    results.push(compare(`attentionDecode.out ${tag}`, o, ref.out, ATTENTION_TOL));
    results.push(compare(`attentionDecode.lse ${tag}`, l, ref.lse, ATTENTION_TOL));
    results.push(compare(`attentionDecode.kv ${tag}`, k.subarray(0, (past + t) * 2 * C), ref.kv, { atol: 0, rtol: 0 }));
    gpu.release(out, lse, kv);
  }
  gpu.release(q);
  return results;
}

export async function checkAttentionDecode(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const results: Comparison[] = [];
  const shapes = size === 'small' ? SMALL : FULL;
  for (const [i, shape] of shapes.entries()) {
    const plans: DecodeOptions[] = [{}];
    if (shape[1] + shape[2] > 1) plans.push(...(size === 'full' ? FORCED : FORCED.slice(0, 1)));
    results.push(...(await checkShape(gpu, shape, 300 + i, plans)));
  }
  return results;
}
