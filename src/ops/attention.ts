import shader from '../../shaders/attention.wgsl?raw';
import {
  expectDType,
  expectRank,
  expectShape,
  LimitError,
  ShapeError,
  type Gpu,
  type Param,
  type Tensor,
} from '../gpu/index.ts';
import { grid1d } from './grid.ts';

/**
 * Causal multi-head attention on a fused qkv tensor, FlashAttention-2 style (see shaders/attention.wgsl):
 * memory beyond the inputs and outputs is O(T) per head (lse, delta), never T×T. The plain version of the
 * same op, to read first: attention-naive.ts.
 */
export interface AttentionDims {
  batch: number;
  seq: number;
  heads: number;
}

/**
 * 'tiled': K/V (or Q/dO) blocks staged in workgroup memory (GPUs, lavapipe).
 * 'rows': no workgroup memory or barriers, blocks read straight from the storage buffer (SwiftShader, where a
 * barrier means switching between coroutines of invocations).
 */
export type AttentionVariant = 'tiled' | 'rows';

export interface AttentionPlan {
  variant: AttentionVariant;
  /** Invocations per workgroup. */
  rows: number;
  /** Rows (queries, or keys for dK/dV) per invocation; a workgroup owns rows·rowsPerInvocation rows. */
  rowsPerInvocation: number;
  /** Keys (queries for dK/dV) per block; for 'tiled' the workgroup-memory tile height. */
  keyBlock: number;
}

export interface AttentionOptions {
  /** Force a variant (tests run both on every device); default: chooseAttentionPlan. */
  variant?: AttentionVariant;
  /** Workgroup-memory budget in bytes for 'tiled' (default: the device limit), to test small-limit tiles. */
  workgroupStorage?: number;
  /** Override the plan's rows per workgroup / key block (tuning); clamped to the device limits. */
  rows?: number;
  rowsPerInvocation?: number;
  keyBlock?: number;
}

/** Largest head dimension the kernels hold in registers. */
export const MAX_HEAD_DIM = 128;

/** Registers per row-blocked array in the shader (REGS4, in vec4): rowsPerInvocation·ceil(D/4) must fit. */
const REGS4 = 32;
const MAXR = 8;

/**
 * Picks the kernel variant and its sizes from the adapter, the device limits and the shape.
 *
 * CPU drivers run 8 (lavapipe) or 4 (SwiftShader) invocations as SIMD lanes and load every element lane
 * by lane, so loads, not FLOPs, bound them: each invocation owns as many rows as its registers allow
 * (rowsPerInvocation·D ≤ 128), so one loaded key serves that many rows. Measured (forward + backward, C 256,
 * H 4, T 512): lavapipe runs the tiled kernel faster (its workgroup-memory reads skip the bounds checks of
 * storage reads; 16-invocation workgroups amortise staging best), SwiftShader the untiled one (its barriers
 * are costlier). GPUs get the classic layout: 64 invocations, one row each, K/V tiles in workgroup memory
 * as tall (≤ 64 keys) as maxComputeWorkgroupStorageSize allows; short sequences get smaller workgroups.
 */
export function chooseAttentionPlan(
  gpu: Gpu,
  headDim: number,
  opts: AttentionOptions = {},
  seq = Infinity,
): AttentionPlan {
  const a = gpu.adapter;
  const swiftshader = /swiftshader/i.test(`${a.vendor} ${a.architecture} ${a.device} ${a.description}`);
  const variant = opts.variant ?? (a.isSoftware && swiftshader ? 'rows' : 'tiled');
  const lim = gpu.limits;
  const maxInv = Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  const d4 = Math.ceil(headDim / 4);
  const rpiMax = Math.max(1, Math.min(MAXR, Math.floor(REGS4 / d4)));
  const rowsPerInvocation = Math.min(rpiMax, opts.rowsPerInvocation ?? (a.isSoftware ? 4 : 1));
  // Software drivers compile each pipeline slowly: keep one workgroup size for every shape there.
  const gpuRows = Math.max(8, Math.min(64, 2 ** Math.ceil(Math.log2(Math.max(1, seq / rowsPerInvocation)))));
  const rows = Math.min(maxInv, opts.rows ?? (a.isSoftware ? 16 : gpuRows));
  if (variant === 'rows') return { variant, rows, rowsPerInvocation, keyBlock: Math.max(1, opts.keyBlock ?? 32) };
  const budget = Math.min(opts.workgroupStorage ?? Infinity, lim.maxComputeWorkgroupStorageSize);
  const perKey = 2 * d4 * 16 + 2 * 4; // K and V (or Q and dO) rows as vec4, plus lse and delta
  const fit = Math.floor(budget / perKey);
  if (fit < 1)
    throw new LimitError(
      `attention: head dim ${headDim} needs ${perKey} bytes of workgroup memory, the device has ${budget}`,
    );
  const keyBlock = Math.max(1, Math.min(fit, 64, opts.keyBlock ?? 64));
  return { variant, rows, rowsPerInvocation, keyBlock };
}

/** The dimensions of an attention call, checked. */
export interface ResolvedAttention {
  B: number;
  T: number;
  H: number;
  C: number;
  D: number;
}

/** Checks qkv against dims (the same rules for every attention kernel) and derives C and the head dim D. */
export function resolveAttention(qkv: Tensor, dims: AttentionDims, what: string): ResolvedAttention {
  const { batch: B, seq: T, heads: H } = dims;
  for (const [k, v] of [
    ['batch', B],
    ['seq', T],
    ['heads', H],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ShapeError(`${what}: ${k} must be a positive integer, got ${v}`);
  }
  expectDType(qkv, 'f32', `${what} qkv`);
  const [rowsN, cols] = expectRank(qkv, 2, `${what} qkv`);
  if (rowsN !== B * T) throw new ShapeError(`${what}: qkv has ${rowsN} rows, batch·seq = ${B}·${T} = ${B * T}`);
  if (cols % (3 * H) !== 0)
    throw new ShapeError(`${what}: qkv has ${cols} columns, not divisible by 3·heads = ${3 * H}`);
  const C = cols / 3;
  const D = C / H;
  if (D > MAX_HEAD_DIM) throw new ShapeError(`${what}: head dim ${D} exceeds the kernels' maximum of ${MAX_HEAD_DIM}`);
  return { B, T, H, C, D };
}

function setup(gpu: Gpu, r: ResolvedAttention, opts: AttentionOptions) {
  const plan = chooseAttentionPlan(gpu, r.D, opts, r.T);
  const nblk = Math.ceil(r.T / (plan.rows * plan.rowsPerInvocation));
  const constants = {
    WG: plan.rows,
    RPI: plan.rowsPerInvocation,
    DH: r.D,
    KB: plan.keyBlock,
    TILED: plan.variant === 'tiled' ? 1 : 0,
  };
  const params: Param[] = [
    ['u32', r.T],
    ['u32', r.H],
    ['u32', r.C],
    ['u32', nblk],
    ['u32', r.B * r.H],
    ['f32', 1 / Math.sqrt(r.D)],
    ['u32', plan.rowsPerInvocation],
  ];
  const workgroups = grid1d(gpu, r.B * r.H * nblk, 1);
  const rowWorkgroups = grid1d(gpu, r.B * r.H * r.T, plan.rows);
  return { plan, constants, params, workgroups, rowWorkgroups };
}

/**
 * Forward: out [B·T, C] and lse [B·H·T] (log-sum-exp of the scaled scores of each query row, index (b·H + h)·T + t).
 */
export function attention(
  gpu: Gpu,
  qkv: Tensor,
  dims: AttentionDims,
  opts: AttentionOptions = {},
): { out: Tensor; lse: Tensor } {
  const r = resolveAttention(qkv, dims, 'attention');
  const { plan, constants, params, workgroups } = setup(gpu, r, opts);
  const out = gpu.empty([r.B * r.T, r.C], 'f32', 'attention.out');
  const lse = gpu.empty([r.B * r.H * r.T], 'f32', 'attention.lse');
  gpu.dispatch({
    shader,
    entry: 'forward',
    constants,
    params,
    label: `attention.forward.${plan.variant}`,
    buffers: { 1: qkv, 2: out, 3: lse },
    workgroups,
  });
  return { out, lse };
}

/** Checks the backward's inputs: out and dout [B·T, C], lse [B·H·T], all f32. */
export function resolveAttentionBackward(
  qkv: Tensor,
  out: Tensor,
  dout: Tensor,
  lse: Tensor,
  dims: AttentionDims,
  what: string,
): ResolvedAttention {
  const r = resolveAttention(qkv, dims, what);
  expectDType(out, 'f32', `${what} out`);
  expectDType(dout, 'f32', `${what} dout`);
  expectDType(lse, 'f32', `${what} lse`);
  expectShape(out, [r.B * r.T, r.C], `${what} out`);
  expectShape(dout, [r.B * r.T, r.C], `${what} dout`);
  if (lse.size !== r.B * r.H * r.T)
    throw new ShapeError(`${what}: lse has ${lse.size} elements, B·H·T = ${r.B * r.H * r.T}`);
  return r;
}

/** Backward: dqkv [B·T, 3C] from the forward's inputs and outputs and the upstream gradient dout [B·T, C]. */
export function attentionBackward(
  gpu: Gpu,
  qkv: Tensor,
  out: Tensor,
  dout: Tensor,
  lse: Tensor,
  dims: AttentionDims,
  opts: AttentionOptions = {},
): Tensor {
  const r = resolveAttentionBackward(qkv, out, dout, lse, dims, 'attentionBackward');
  const { plan, constants, params, workgroups, rowWorkgroups } = setup(gpu, r, opts);
  const delta = gpu.empty([r.B * r.H * r.T], 'f32', 'attention.delta');
  const dqkv = gpu.empty([r.B * r.T, 3 * r.C], 'f32', 'attention.dqkv');
  const v = plan.variant;
  // delta needs only these constants; passing no others lets every plan share its pipeline.
  gpu.dispatch({
    shader,
    entry: 'backward_delta',
    constants: { WG: plan.rows, DH: r.D },
    params,
    label: 'attention.delta',
    buffers: { 4: out, 5: dout, 6: delta },
    workgroups: rowWorkgroups,
  });
  const buffers = { 1: qkv, 2: dqkv, 3: lse, 5: dout, 6: delta };
  gpu.dispatch({ shader, entry: 'backward_dq', constants, params, label: `attention.dq.${v}`, buffers, workgroups });
  gpu.dispatch({ shader, entry: 'backward_dkv', constants, params, label: `attention.dkv.${v}`, buffers, workgroups });
  gpu.release(delta);
  return dqkv;
}

/**
 * Floating-point operations of causal attention, counting only the matrix products (the softmax's exp and
 * the rescaling are O(T·T) without the factor D and left out, as is usual). Causal-aware: each (b, h) has
 * P = T(T+1)/2 (query, key) pairs with key ≤ query, and each product over those pairs costs 2·D flops.
 *   forward:  S = QKᵀ, O = PV                       → 2 products → 4·D·P per (b, h), i.e. 4·C·P per sequence
 *   backward: dV = PᵀdO, dP = dO Vᵀ, dQ = dS K, dK = dSᵀQ, plus recomputing S → 5 products → 10·C·P
 * The kernels execute more in backward (the dQ and dK/dV kernels each recompute S and dP: 7 products,
 * 14·C·P) to avoid atomics; this counts the algorithm's work, so rates stay comparable across kernels.
 */
export function attentionFlops(dims: AttentionDims & { channels: number }, backward = false): number {
  const pairs = (dims.seq * (dims.seq + 1)) / 2;
  return dims.batch * dims.channels * pairs * (backward ? 10 : 4);
}
