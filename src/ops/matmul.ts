import tiledShader from '../../shaders/matmul.wgsl?raw';
import naiveShader from '../../shaders/matmul-naive.wgsl?raw';
import registerShader from '../../shaders/matmul-register.wgsl?raw';
import {
  ArgumentError,
  expectDType,
  expectRank,
  expectShape,
  LimitError,
  ShapeError,
  type Gpu,
  type Tensor,
} from '../gpu/index.ts';
import type { Param } from '../gpu/index.ts';
import { grid1d } from './grid.ts';

/**
 * 'tiled': workgroup-memory tiles, 4×4 outputs per invocation (GPUs). 'register': no workgroup memory,
 * 8×16 outputs per invocation in registers (CPU Vulkan drivers). 'naive': one output per invocation (baseline).
 */
export type MatmulVariant = 'tiled' | 'register' | 'naive';
export const MATMUL_VARIANTS: readonly MatmulVariant[] = ['tiled', 'register', 'naive'];

export interface MatmulOptions {
  /** A is stored [K,M] (op(A) = Aᵀ). */
  transA?: boolean;
  /** B is stored [N,K] (op(B) = Bᵀ). */
  transB?: boolean;
  /** [N], added to every row. */
  bias?: Tensor;
  /** [M,N]: the result is written into this tensor as C += op(A)·op(B) (+ bias), and returned. */
  accumulate?: Tensor;
  /** Kernel to use; default chooseMatmulVariant(). */
  variant?: MatmulVariant;
}

export function matmulFlops(M: number, N: number, K: number): number {
  return 2 * M * N * K;
}

/**
 * Picks the kernel for an adapter and shape, as tfjs-webgpu does. CPU drivers (lavapipe, SwiftShader) run
 * invocations as SIMD lanes of CPU threads: there workgroup barriers are coroutine switches and every
 * storage load is emulated lane by lane, so the register-blocked kernel (fewest loads per multiply-add, no
 * barriers) wins at every shape measured, 256³ to 1024³, the transformer shapes and skinny ones down to
 * N = 1 or M = 2, by 1.5–4× over tiled (and over tfjs-webgpu); only a single row (M = 1, decoding one
 * token) is as fast or faster one output per invocation. On GPUs the tiled kernel shares loads through
 * workgroup memory; for matrix-vector-like shapes (M or N below 16) most of its 64×64 tile would be idle,
 * and one invocation per output is better.
 */
export function chooseMatmulVariant(
  gpu: Gpu,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
): MatmulVariant {
  void K;
  void transA;
  void transB;
  if (gpu.adapter.isSoftware) return M === 1 ? 'naive' : 'register';
  return M < 16 || N < 16 ? 'naive' : 'tiled';
}

interface Dims {
  M: number;
  N: number;
  K: number;
}

function matmulDims(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Dims {
  expectDType(a, 'f32', 'matmul A');
  expectDType(b, 'f32', 'matmul B');
  expectRank(a, 2, 'matmul A');
  expectRank(b, 2, 'matmul B');
  const [M, Ka] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [Kb, N] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (Ka !== Kb) {
    throw new ShapeError(
      `matmul: inner dimensions differ: op(A) is [${M}, ${Ka}] (A ` +
        `[${a.shape.join(', ')}]${transA ? ', transA' : ''}), ` +
        `op(B) is [${Kb}, ${N}] (B [${b.shape.join(', ')}]${transB ? ', transB' : ''})`,
    );
  }
  return { M, N, K: Ka };
}

/** Row blocks past the per-dimension limit fold into z; kernels recover the block as wid.y + wid.z·num_workgroups.y. */
function grid2d(gpu: Gpu, what: string, colBlocks: number, rowBlocks: number): [number, number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (colBlocks > max)
    throw new LimitError(`${what}: ${colBlocks} column blocks exceed this device's ${max} workgroups per dimension`);
  const z = Math.ceil(rowBlocks / max);
  if (z > max) throw new LimitError(`${what}: ${rowBlocks} row blocks exceed this device's ${max}² workgroups`);
  return [colBlocks, Math.ceil(rowBlocks / z), z];
}

interface TileConfig {
  TM: number;
  TN: number;
  TK: number;
}

/** The largest tile whose invocations and workgroup memory fit this device (64×64×16: 256 invocations, 8 KiB). */
export function tiledConfig(gpu: Gpu): TileConfig {
  const l = gpu.limits;
  for (const c of [
    { TM: 64, TN: 64, TK: 16 },
    { TM: 32, TN: 32, TK: 16 },
    { TM: 16, TN: 16, TK: 8 },
  ]) {
    const threads = (c.TM / 4) * (c.TN / 4);
    const bytes = 4 * c.TK * (c.TM + c.TN);
    if (
      threads <= l.maxComputeInvocationsPerWorkgroup &&
      c.TN / 4 <= l.maxComputeWorkgroupSizeX &&
      c.TM / 4 <= l.maxComputeWorkgroupSizeY &&
      bytes <= l.maxComputeWorkgroupStorageSize
    )
      return c;
  }
  throw new LimitError(
    `matmul: this device cannot run even a 16×16 tile (limits ${JSON.stringify({
      invocations: l.maxComputeInvocationsPerWorkgroup,
      storage: l.maxComputeWorkgroupStorageSize,
    })})`,
  );
}

/** A 2-D workgroup shape of at most wx×wy that the device allows (halving the larger side until it fits). */
function workgroup2d(gpu: Gpu, wx: number, wy: number): [number, number] {
  const l = gpu.limits;
  while (
    wx * wy > l.maxComputeInvocationsPerWorkgroup ||
    wx > l.maxComputeWorkgroupSizeX ||
    wy > l.maxComputeWorkgroupSizeY
  ) {
    if (wx >= wy && wx > 1) wx /= 2;
    else if (wy > 1) wy /= 2;
    else break;
  }
  return [wx, wy];
}

const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * How the register kernel's workgroup (WG invocations, each an 8×16 block) splits into wx column blocks ×
 * WG/wx row blocks. 16 × 4 (256 columns × 32 rows) measured best on lavapipe for wide outputs; narrower
 * outputs get fewer columns and more rows so that invocations are not spent on columns past N, and short
 * ones (few row blocks) get the invocations back as columns.
 */
function registerShape(gpu: Gpu, M: number, N: number): { WG: number; wx: number } {
  const WG = Math.min(64, gpu.limits.maxComputeInvocationsPerWorkgroup, gpu.limits.maxComputeWorkgroupSizeX);
  let wx = Math.min(16, WG, pow2ceil(Math.ceil(N / 16)));
  const rowsNeeded = pow2ceil(Math.ceil(M / 8));
  if (WG / wx > rowsNeeded) wx = WG / Math.min(rowsNeeded, WG);
  return { WG, wx };
}

/**
 * The register kernel's most vectorised entry point for this layout (see shaders/matmul-register.wgsl).
 * Binding 5 / 6 view B / A as vec4, which needs the element count to be a multiple of 4 (it is, given the
 * divisibility each entry point requires).
 */
function registerEntry(
  a: Tensor,
  b: Tensor,
  biasT: Tensor,
  out: Tensor,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
): { entry: string; buffers: Record<number, Tensor> } {
  if (!transB && N % 4 === 0) {
    return transA && M % 4 === 0
      ? { entry: 'main_at_vec4', buffers: { 3: biasT, 4: out, 5: b, 6: a } }
      : { entry: 'main_vec4', buffers: { 1: a, 3: biasT, 4: out, 5: b } };
  }
  if (transB && !transA && K % 4 === 0) return { entry: 'main_bt_k4', buffers: { 3: biasT, 4: out, 5: b, 6: a } };
  return { entry: 'main', buffers: { 1: a, 2: b, 3: biasT, 4: out } };
}

export function matmul(gpu: Gpu, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, bias, accumulate } = opts;
  const { M, N, K } = matmulDims(a, b, transA, transB);
  const variant = opts.variant ?? chooseMatmulVariant(gpu, M, N, K, transA, transB);
  if (!MATMUL_VARIANTS.includes(variant))
    throw new ArgumentError(`matmul: unknown variant '${String(variant)}' (use ${MATMUL_VARIANTS.join(', ')})`);
  if (bias) {
    expectDType(bias, 'f32', 'matmul bias');
    expectShape(bias, [N], 'matmul bias');
  }
  if (accumulate) {
    expectDType(accumulate, 'f32', 'matmul accumulate');
    expectShape(accumulate, [M, N], 'matmul accumulate');
    for (const [t, what] of [
      [a, 'A'],
      [b, 'B'],
      [bias, 'bias'],
    ] as const) {
      if (t && t.buffer === accumulate.buffer)
        throw new ArgumentError(`matmul: the accumulate tensor is also ${what}; it must be a separate tensor`);
    }
  }
  const out = accumulate ?? gpu.empty([M, N], 'f32', 'matmul.out');
  const params: Param[] = [
    ['u32', M],
    ['u32', N],
    ['u32', K],
    ['u32', transA ? 1 : K],
    ['u32', transA ? M : 1], // op(A)[m,k] = a[m·sam + k·sak]
    ['u32', transB ? 1 : N],
    ['u32', transB ? K : 1], // op(B)[k,n] = b[k·sbk + n·sbn]
    ['u32', (bias ? 1 : 0) | (accumulate ? 2 : 0)],
    ['u32', 0], // wx: the register kernel's workgroup shape, set below
  ];
  // Without a bias, A stands in at binding 3: every entry point statically uses it, and read-only
  // bindings may share a buffer.
  const biasT = bias ?? a;
  const label = `matmul.${variant}`;
  if (variant === 'register') {
    const { WG, wx } = registerShape(gpu, M, N);
    const workgroups = grid2d(gpu, label, Math.ceil(N / (16 * wx)), Math.ceil(M / (8 * (WG / wx))));
    const { entry, buffers } = registerEntry(a, b, biasT, out, M, N, K, transA, transB);
    gpu.dispatch({
      shader: registerShader,
      entry,
      constants: { WG },
      label,
      params: [...params.slice(0, 8), ['u32', wx]],
      workgroups,
      buffers,
    });
  } else if (variant === 'tiled') {
    const { TM, TN, TK } = tiledConfig(gpu);
    const FAST = M % TM === 0 && N % TN === 0 && K % TK === 0 ? 1 : 0;
    gpu.dispatch({
      shader: tiledShader,
      entry: 'main',
      constants: { TM, TN, TK, FAST },
      label,
      params,
      buffers: { 1: a, 2: b, 3: biasT, 4: out },
      workgroups: grid2d(gpu, label, Math.ceil(N / TN), Math.ceil(M / TM)),
    });
  } else {
    const [WX, WY] = workgroup2d(gpu, 16, 16);
    gpu.dispatch({
      shader: naiveShader,
      entry: 'main',
      constants: { WX, WY },
      label,
      params,
      buffers: { 1: a, 2: b, 3: biasT, 4: out },
      workgroups: grid2d(gpu, label, Math.ceil(N / WX), Math.ceil(M / WY)),
    });
  }
  return out;
}

/**
 * db[N] = column sums of dy[M,N] (each column summed over rows in order: deterministic, no atomics).
 * With `accumulate` ([N]), the sums are added into it and it is returned.
 */
export function biasGrad(gpu: Gpu, dy: Tensor, opts: { accumulate?: Tensor } = {}): Tensor {
  expectDType(dy, 'f32', 'biasGrad dy');
  const [M, N] = expectRank(dy, 2, 'biasGrad dy');
  const acc = opts.accumulate;
  if (acc) {
    expectDType(acc, 'f32', 'biasGrad accumulate');
    expectShape(acc, [N], 'biasGrad accumulate');
    if (acc.buffer === dy.buffer)
      throw new ArgumentError('biasGrad: the accumulate tensor is also dy; it must be a separate tensor');
  }
  const db = acc ?? gpu.empty([N], 'f32', 'matmul.db');
  const BG_WG = Math.min(64, gpu.limits.maxComputeInvocationsPerWorkgroup, gpu.limits.maxComputeWorkgroupSizeX);
  gpu.dispatch({
    shader: tiledShader,
    entry: 'bias_grad',
    constants: { BG_WG },
    label: 'matmul.biasGrad',
    params: [
      ['u32', M],
      ['u32', N],
      ['u32', 0],
      ['u32', 0],
      ['u32', 0],
      ['u32', 0],
      ['u32', 0],
      ['u32', acc ? 2 : 0],
      ['u32', 0],
    ],
    buffers: { 1: dy, 4: db },
    workgroups: grid1d(gpu, N, BG_WG),
  });
  return db;
}

/** y[M,N] = x[M,K]·W[K,N] + b[N]; W is stored [in, out] (GPT-2's Conv1D convention). */
export function linearForward(gpu: Gpu, x: Tensor, w: Tensor, b?: Tensor): Tensor {
  return matmul(gpu, x, w, { bias: b });
}

/**
 * Backward of linearForward for dL/dy = dy [M,N]: dx = dy·Wᵀ [M,K], dW = xᵀ·dy [K,N], db = Σ_rows dy [N].
 * With `accumulate`, dW (and db, if given) are added into those tensors (gradient accumulation over
 * micro-batches) and returned; otherwise fresh tensors are returned (db always: without accumulate.db it is new).
 */
export function linearBackward(
  gpu: Gpu,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  opts: { accumulate?: { dw: Tensor; db?: Tensor } } = {},
): { dx: Tensor; dw: Tensor; db: Tensor } {
  expectRank(x, 2, 'linearBackward x');
  expectRank(w, 2, 'linearBackward w');
  expectRank(dy, 2, 'linearBackward dy');
  const [M, K] = x.shape;
  const N = w.shape[1];
  expectShape(w, [K, N], 'linearBackward w');
  expectShape(dy, [M, N], 'linearBackward dy');
  const dx = matmul(gpu, dy, w, { transB: true });
  const dw = matmul(gpu, x, dy, { transA: true, accumulate: opts.accumulate?.dw });
  const db = biasGrad(gpu, dy, { accumulate: opts.accumulate?.db });
  return { dx, dw, db };
}
