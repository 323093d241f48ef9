import type { Gpu } from '../gpu/index.ts';
import { expectClose, type CheckSize } from './check-kit.ts';
import type { Comparison, Tolerance } from './compare.ts';
import {
  attention,
  attentionBackward,
  chooseAttentionPlan,
  type AttentionDims,
  type AttentionOptions,
} from './attention.ts';
import { attentionBackwardRef, attentionRef } from './attention.ref.ts';
import { Rng } from './rng.ts';

/**
 * float32 attention against float64: every output is a softmax-weighted sum of up to T terms (and the
 * gradients sums of two such products), accumulated in a fixed order in float32. Observed errors are
 * ~1e-6 on O(1) values; the tolerance leaves an order of magnitude.
 */
export const ATTENTION_TOL: Tolerance = { atol: 2e-5, rtol: 2e-4 };

/** [batch, seq, heads, head dim]. */
export type AttentionShape = [number, number, number, number];
type Shape = AttentionShape;

const FULL: Shape[] = [
  [1, 1, 1, 8], // T = 1: a single key
  [2, 7, 2, 16],
  [3, 45, 3, 8], // T not a multiple of any block or tile
  [1, 130, 4, 16], // several blocks and tiles
  [2, 130, 2, 8],
  [2, 45, 1, 64],
  [1, 130, 2, 64],
  [2, 9, 2, 6], // D not a multiple of 4
];

/**
 * The plans this device does not choose by default, so every variant is checked on every device: the
 * untiled kernel, and the GPU plan at SwiftShader's 16 KiB workgroup-memory limit. Only on small head dims:
 * CPU drivers compile each (plan, D) pipeline in seconds to a minute.
 */
const OTHER_PLANS: AttentionOptions[] = [
  { variant: 'rows' },
  { variant: 'tiled', rows: 64, rowsPerInvocation: 1, workgroupStorage: 16384 },
];
const OTHER_SHAPES: Shape[] = [
  [1, 1, 1, 8],
  [3, 45, 3, 8],
  [2, 130, 2, 8],
  [2, 9, 2, 6],
];

const SMALL: Shape[] = [
  [1, 1, 1, 8],
  [2, 7, 2, 8],
  [1, 13, 2, 16],
];

export function shapeLabel([B, T, H, D]: Shape): string {
  return `B=${B} T=${T} H=${H} D=${D}`;
}

function planLabel(gpu: Gpu, D: number, T: number, opts: AttentionOptions): string {
  const p = chooseAttentionPlan(gpu, D, opts, T);
  return `${p.variant} ${p.rows}×${p.rowsPerInvocation} kb${p.keyBlock}`;
}

/** Seeded inputs for one shape: qkv in [−2, 2] (scaled scores of a few units, so softmax is far from uniform). */
export function attentionInputs(
  shape: Shape,
  seed: number,
): { qkv: Float32Array; dout: Float32Array; dims: AttentionDims } {
  const [B, T, H, D] = shape;
  const rng = new Rng(seed);
  const C = H * D;
  return { qkv: rng.f32(B * T * 3 * C, -2, 2), dout: rng.f32(B * T * C), dims: { batch: B, seq: T, heads: H } };
}

async function checkShape(gpu: Gpu, shape: Shape, seed: number, plans: AttentionOptions[]): Promise<Comparison[]> {
  const { qkv, dout, dims } = attentionInputs(shape, seed);
  const ref = attentionRef(qkv, dims);
  const dref = attentionBackwardRef(qkv, dout, dims);
  const C = shape[2] * shape[3];
  const results: Comparison[] = [];
  const q = gpu.upload(qkv, [shape[0] * shape[1], 3 * C]);
  const dt = gpu.upload(dout, [shape[0] * shape[1], C]);
  for (const opts of plans) {
    const tag = `${shapeLabel(shape)} ${planLabel(gpu, shape[3], shape[1], opts)}`;
    const { out, lse } = attention(gpu, q, dims, opts);
    const dqkv = attentionBackward(gpu, q, out, dt, lse, dims, opts);
    results.push(await expectClose(gpu, `attention.out ${tag}`, out, ref.out, ATTENTION_TOL));
    results.push(await expectClose(gpu, `attention.lse ${tag}`, lse, ref.lse, ATTENTION_TOL));
    results.push(await expectClose(gpu, `attention.dqkv ${tag}`, dqkv, dref, ATTENTION_TOL));
  }
  gpu.release(q, dt);
  return results;
}

export async function checkAttention(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const results: Comparison[] = [];
  const shapes = size === 'small' ? SMALL : FULL;
  for (const [i, shape] of shapes.entries()) {
    const plans: AttentionOptions[] = [{}];
    if (size === 'full' && OTHER_SHAPES.some((s) => s.join() === shape.join())) plans.push(...OTHER_PLANS);
    results.push(...(await checkShape(gpu, shape, 100 + i, plans)));
  }
  return results;
}

export interface AttentionMemory {
  /** Largest single buffer the forward + backward allocated (bytes, pool buckets). */
  largestBuffer: number;
  /** Peak bytes held by buffers allocated during forward + backward, above what was live before. */
  peakBytes: number;
}

/**
 * Runs forward + backward once and reports what it allocated, from the buffer pool's statistics. Inputs
 * are allocated before the measurement; everything is released afterwards.
 */
export async function attentionMemory(
  gpu: Gpu,
  dims: AttentionDims & { channels: number },
  opts: AttentionOptions = {},
): Promise<AttentionMemory> {
  const rows = dims.batch * dims.seq;
  const rng = new Rng(5);
  const qkv = gpu.upload(rng.f32(rows * 3 * dims.channels), [rows, 3 * dims.channels]);
  const dout = gpu.upload(rng.f32(rows * dims.channels), [rows, dims.channels]);
  await gpu.sync();
  gpu.pool.resetPeak();
  const before = gpu.pool.stats.liveBytes;
  const { out, lse } = attention(gpu, qkv, dims, opts);
  const dqkv = attentionBackward(gpu, qkv, out, dout, lse, dims, opts);
  await gpu.sync();
  const result = { largestBuffer: gpu.pool.stats.largestBuffer, peakBytes: gpu.pool.stats.peakLiveBytes - before };
  gpu.release(qkv, dout, out, lse, dqkv);
  return result;
}
