import shader from '../../shaders/layernorm.wgsl?raw';
import {
  ArgumentError,
  expectDType,
  expectRank,
  expectShape,
  ShapeError,
  type Gpu,
  type Param,
  type Tensor,
} from '../gpu/index.ts';
import { elementwiseWorkgroup, grid1d } from './grid.ts';

/** GPT-2's LayerNorm epsilon. */
export const LAYERNORM_EPS = 1e-5;

/**
 * Rows per chunk of the two-stage dγ/dβ reduction: enough chunks × columns to fill a GPU, few enough
 * additions per invocation; the partial buffer is 2·⌈N/RC⌉·C floats.
 */
const ROWS_PER_CHUNK = 64;

/** Largest power of two ≤ n. */
function pow2Floor(n: number): number {
  return 2 ** Math.floor(Math.log2(Math.max(1, n)));
}

/**
 * Workgroup size of the row kernels: a power of two (tree reduction), no wider than the row needs (about one
 * column per invocation) and within the device's limits.
 */
export function rowWorkgroup(gpu: Gpu, width: number): number {
  const cap = pow2Floor(
    Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup, gpu.limits.maxComputeWorkgroupSizeX),
  );
  return Math.min(cap, Math.max(32, pow2Floor(width)));
}

function checkInputs(x: Tensor, gamma: Tensor, what: string): [number, number] {
  expectDType(x, 'f32', `${what} x`);
  expectDType(gamma, 'f32', `${what} gamma`);
  const [n, c] = expectRank(x, 2, `${what} x`);
  if (c < 2) throw new ShapeError(`${what}: x must have at least 2 columns to normalise, got [${x.shape.join(', ')}]`);
  expectShape(gamma, [c], `${what} gamma`);
  return [n, c];
}

/**
 * y = (x − mean)/√(var + eps)·γ + β per row of x [N, C] (biased variance). Also returns mean and rstd [N] for the
 * backward.
 */
export function layernorm(
  gpu: Gpu,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps = LAYERNORM_EPS,
): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const [n, c] = checkInputs(x, gamma, 'layernorm');
  expectDType(beta, 'f32', 'layernorm beta');
  expectShape(beta, [c], 'layernorm beta');
  if (!(eps > 0) || !Number.isFinite(eps))
    throw new ArgumentError(`layernorm: eps must be positive and finite, got ${eps}`);
  const y = gpu.empty([n, c], 'f32', 'layernorm.y');
  const mean = gpu.empty([n], 'f32', 'layernorm.mean');
  const rstd = gpu.empty([n], 'f32', 'layernorm.rstd');
  gpu.dispatch({
    shader,
    entry: 'forward',
    constants: { WG: rowWorkgroup(gpu, c) },
    label: 'layernorm.forward',
    params: params(n, c, eps),
    buffers: { 1: x, 2: gamma, 3: beta, 4: y, 5: mean, 6: rstd },
    workgroups: grid1d(gpu, n, 1),
  });
  return { y, mean, rstd };
}

/** Gradients of LayerNorm given the forward's mean and rstd. dγ and dβ sum over rows in a fixed order. */
export function layernormBackward(
  gpu: Gpu,
  x: Tensor,
  gamma: Tensor,
  mean: Tensor,
  rstd: Tensor,
  dy: Tensor,
): { dx: Tensor; dgamma: Tensor; dbeta: Tensor } {
  const [n, c] = checkInputs(x, gamma, 'layernormBackward');
  expectDType(mean, 'f32', 'layernormBackward mean');
  expectDType(rstd, 'f32', 'layernormBackward rstd');
  expectDType(dy, 'f32', 'layernormBackward dy');
  expectShape(mean, [n], 'layernormBackward mean');
  expectShape(rstd, [n], 'layernormBackward rstd');
  expectShape(dy, [n, c], 'layernormBackward dy');
  const chunks = Math.ceil(n / ROWS_PER_CHUNK);
  const par = params(n, c, LAYERNORM_EPS, chunks);
  const dx = gpu.empty([n, c], 'f32', 'layernorm.dx');
  gpu.dispatch({
    shader,
    entry: 'backward_dx',
    constants: { WG: rowWorkgroup(gpu, c) },
    label: 'layernorm.backward_dx',
    params: par,
    buffers: { 1: x, 2: gamma, 7: mean, 8: rstd, 9: dy, 10: dx },
    workgroups: grid1d(gpu, n, 1),
  });
  const WG = elementwiseWorkgroup(gpu);
  const partial = gpu.empty([2, chunks, c], 'f32', 'layernorm.partial');
  gpu.dispatch({
    shader,
    entry: 'backward_partial',
    constants: { WG },
    label: 'layernorm.backward_partial',
    params: par,
    buffers: { 1: x, 7: mean, 8: rstd, 9: dy, 11: partial },
    workgroups: grid1d(gpu, chunks * c, WG),
  });
  const dgamma = gpu.empty([c], 'f32', 'layernorm.dgamma');
  const dbeta = gpu.empty([c], 'f32', 'layernorm.dbeta');
  gpu.dispatch({
    shader,
    entry: 'backward_reduce',
    constants: { WG },
    label: 'layernorm.backward_reduce',
    params: par,
    buffers: { 12: partial, 13: dgamma, 14: dbeta },
    workgroups: grid1d(gpu, c, WG),
  });
  gpu.release(partial);
  return { dx, dgamma, dbeta };
}

function params(n: number, c: number, eps: number, chunks = 0): Param[] {
  return [
    ['u32', n],
    ['u32', c],
    ['f32', eps],
    ['u32', ROWS_PER_CHUNK],
    ['u32', chunks],
  ];
}
