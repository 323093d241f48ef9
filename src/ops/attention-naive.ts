import shader from '../../shaders/attention-naive.wgsl?raw';
import type { Gpu, Param, Tensor } from '../gpu/index.ts';
import { resolveAttention, resolveAttentionBackward, type AttentionDims, type ResolvedAttention } from './attention.ts';
import { grid1d } from './grid.ts';

/**
 * Causal multi-head attention, the plain version (shaders/attention-naive.wgsl): one invocation per query
 * row (forward, dQ) or key row (dK/dV), no workgroup memory. Same inputs, outputs and checks as attention.ts
 * (the FlashAttention-2 kernel the model uses), so the two can be swapped and compared; this one is the
 * reading copy and the baseline, not the fast path.
 */

/** Invocations per workgroup: 64, or what the device allows; the kernel needs nothing else from it. */
function workgroup(gpu: Gpu): number {
  return Math.min(64, gpu.limits.maxComputeInvocationsPerWorkgroup, gpu.limits.maxComputeWorkgroupSizeX);
}

function setup(gpu: Gpu, r: ResolvedAttention) {
  const WG = workgroup(gpu);
  // The uniform layout of lib/attention-io.wgsl; nblk and rpi belong to the tiled kernel and are unused here.
  const params: Param[] = [
    ['u32', r.T],
    ['u32', r.H],
    ['u32', r.C],
    ['u32', 0],
    ['u32', r.B * r.H],
    ['f32', 1 / Math.sqrt(r.D)],
    ['u32', 1],
  ];
  return { constants: { WG, DH: r.D }, params, workgroups: grid1d(gpu, r.B * r.H * r.T, WG) };
}

/** Forward: out [B·T, C] and lse [B·H·T], as attention(). */
export function attentionNaive(gpu: Gpu, qkv: Tensor, dims: AttentionDims): { out: Tensor; lse: Tensor } {
  const r = resolveAttention(qkv, dims, 'attentionNaive');
  const { constants, params, workgroups } = setup(gpu, r);
  const out = gpu.empty([r.B * r.T, r.C], 'f32', 'attentionNaive.out');
  const lse = gpu.empty([r.B * r.H * r.T], 'f32', 'attentionNaive.lse');
  gpu.dispatch({
    shader,
    entry: 'forward',
    constants,
    params,
    label: 'attentionNaive.forward',
    buffers: { 1: qkv, 2: out, 3: lse },
    workgroups,
  });
  return { out, lse };
}

/** Backward: dqkv [B·T, 3C], as attentionBackward(). */
export function attentionNaiveBackward(
  gpu: Gpu,
  qkv: Tensor,
  out: Tensor,
  dout: Tensor,
  lse: Tensor,
  dims: AttentionDims,
): Tensor {
  const r = resolveAttentionBackward(qkv, out, dout, lse, dims, 'attentionNaiveBackward');
  const { constants, params, workgroups } = setup(gpu, r);
  const dqkv = gpu.empty([r.B * r.T, 3 * r.C], 'f32', 'attentionNaive.dqkv');
  const buffers = { 1: qkv, 2: dqkv, 3: lse, 4: out, 5: dout };
  for (const entry of ['backward_dq', 'backward_dkv'])
    gpu.dispatch({ shader, entry, constants, params, label: `attentionNaive.${entry}`, buffers, workgroups });
  return dqkv;
}
