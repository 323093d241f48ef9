import shader from '../../shaders/gradclip.wgsl?raw';
import {
  ArgumentError,
  expectDistinct,
  expectDType,
  expectFinite,
  expectShape,
  ShapeError,
  type Gpu,
  type Tensor,
} from '../gpu/index.ts';
import { elementwiseWorkgroup, grid1d } from './grid.ts';

/**
 * Global L2 norm of a set of gradient tensors and the clipping factor, deterministic: one `partial` dispatch
 * per tensor writes per-workgroup sums of squares into that tensor's slots of a shared partials buffer, then
 * one workgroup adds all slots in a fixed order. Same inputs → the same bits, whatever the run.
 *
 * Non-finite gradients (policy): a NaN anywhere makes the norm NaN, an Inf (or a sum of squares above f32
 * max) makes it Inf, and clipGradNorm's scale is then exactly 0. adamwStep treats gradScale 0 as "skip this
 * update" and leaves param, m and v untouched, so broken gradients never reach the weights; the training
 * engine should also read the norm, refuse the step and not advance the step counter.
 */

/** Elements each invocation of `partial` sums: a workgroup covers WG·ITEMS elements per partial slot. */
const ITEMS = 16;

function reduceWorkgroup(gpu: Gpu): number {
  // The tree reduction halves the workgroup, so round down to a power of two.
  const max = Math.min(elementwiseWorkgroup(gpu), Math.floor(gpu.limits.maxComputeWorkgroupStorageSize / 4));
  return 2 ** Math.floor(Math.log2(max));
}

/** Sums of squares of every tensor, per workgroup, into one partials buffer (caller releases it). */
function partialSums(
  gpu: Gpu,
  grads: readonly Tensor[],
  what: string,
): { partials: Tensor; count: number; WG: number } {
  if (grads.length === 0) throw new ShapeError(`${what}: needs at least one gradient tensor`);
  grads.forEach((g, i) => expectDType(g, 'f32', `${what} grads[${i}]`));
  const WG = reduceWorkgroup(gpu);
  const chunk = WG * ITEMS;
  const groups = grads.map((g) => Math.ceil(g.size / chunk));
  const count = groups.reduce((a, b) => a + b, 0);
  const partials = gpu.empty([count], 'f32', `${what}.partials`);
  let base = 0;
  grads.forEach((g, i) => {
    gpu.dispatch({
      shader,
      entry: 'partial',
      constants: { WG, ITEMS },
      label: `${what}.partial`,
      params: [
        ['u32', g.size],
        ['u32', base],
        ['u32', groups[i]],
      ],
      buffers: { 1: g, 2: partials },
      workgroups: grid1d(gpu, groups[i], 1),
    });
    base += groups[i];
  });
  return { partials, count, WG };
}

/** [1] tensor: ‖(g₁, g₂, …)‖₂ over all elements of all tensors. NaN/Inf when a gradient is (see above). */
export function gradNorm(gpu: Gpu, grads: Tensor[]): Tensor {
  const { partials, count, WG } = partialSums(gpu, grads, 'gradNorm');
  const norm = gpu.empty([1], 'f32', 'gradNorm.norm');
  gpu.dispatch({
    shader,
    entry: 'finalize',
    constants: { WG },
    label: 'gradNorm.finalize',
    params: [
      ['u32', count],
      ['f32', 0],
    ],
    buffers: { 1: partials, 2: norm },
    workgroups: [1],
  });
  gpu.release(partials);
  return norm;
}

/**
 * Global norm and clipping factor scale = min(1, maxNorm / (norm + 1e-6)), both [1] tensors that stay on the
 * GPU. Does NOT modify grads: pass `scale` to adamwStep as gradScale (or to scaleInPlace). scale is 0 when
 * the norm is NaN/Inf, which makes adamwStep skip the update.
 */
export function clipGradNorm(gpu: Gpu, grads: Tensor[], maxNorm: number): { norm: Tensor; scale: Tensor } {
  expectFinite(maxNorm, 'clipGradNorm maxNorm');
  if (!(maxNorm > 0)) throw new ArgumentError(`clipGradNorm maxNorm must be > 0, got ${maxNorm}`);
  const { partials, count, WG } = partialSums(gpu, grads, 'clipGradNorm');
  const norm = gpu.empty([1], 'f32', 'clipGradNorm.norm');
  const scale = gpu.empty([1], 'f32', 'clipGradNorm.scale');
  gpu.dispatch({
    shader,
    entry: 'finalize_clip',
    constants: { WG },
    label: 'clipGradNorm.finalize',
    params: [
      ['u32', count],
      ['f32', maxNorm],
    ],
    buffers: { 1: partials, 2: norm, 3: scale },
    workgroups: [1],
  });
  gpu.release(partials);
  return { norm, scale };
}

/** t *= scale[0] in place (materialises clipped gradients; a NaN in t stays NaN even when scale is 0). */
export function scaleInPlace(gpu: Gpu, t: Tensor, scale: Tensor): void {
  expectDType(t, 'f32', 'scaleInPlace t');
  expectDType(scale, 'f32', 'scaleInPlace scale');
  expectShape(scale, [1], 'scaleInPlace scale');
  expectDistinct('scaleInPlace', ['t', t], ['scale', scale]);
  const WG = elementwiseWorkgroup(gpu);
  gpu.dispatch({
    shader,
    entry: 'scale_in_place',
    constants: { WG },
    label: 'scaleInPlace',
    params: [['u32', t.size]],
    buffers: { 1: t, 2: scale },
    workgroups: grid1d(gpu, t.size, WG),
  });
}
