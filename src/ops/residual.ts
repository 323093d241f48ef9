import shader from '../../shaders/residual.wgsl?raw';
import { expectDType, expectFinite, expectShape, type Gpu, type Tensor } from '../gpu/index.ts';
import { elementwiseWorkgroup, grid1d } from './grid.ts';

/** y = a + b, elementwise; a and b must have the same shape (no broadcasting: a residual never needs it). */
export function residualAdd(gpu: Gpu, a: Tensor, b: Tensor): Tensor {
  expectDType(a, 'f32', 'residualAdd a');
  expectDType(b, 'f32', 'residualAdd b');
  expectShape(b, a.shape, 'residualAdd b (shape of a)');
  const y = gpu.empty(a.shape, 'f32', 'residual.y');
  const WG = elementwiseWorkgroup(gpu);
  gpu.dispatch({
    shader,
    entry: 'add',
    constants: { WG },
    label: 'residual.add',
    params: [['u32', a.size]],
    buffers: { 1: a, 2: b, 3: y },
    workgroups: grid1d(gpu, a.size, WG),
  });
  return y;
}

/**
 * acc += scale·x in place (gradient accumulation over micro-batches, averaging replicas with scale 1/R).
 * acc and x must have the same shape; x may be acc itself (acc becomes (1 + scale)·acc).
 */
export function addInPlace(gpu: Gpu, acc: Tensor, x: Tensor, scale = 1): void {
  expectDType(acc, 'f32', 'addInPlace acc');
  expectDType(x, 'f32', 'addInPlace x');
  expectShape(x, acc.shape, 'addInPlace x (shape of acc)');
  expectFinite(scale, 'addInPlace scale');
  const WG = elementwiseWorkgroup(gpu);
  const self = acc.buffer === x.buffer;
  gpu.dispatch({
    shader,
    entry: self ? 'add_scaled_self' : 'add_scaled',
    constants: { WG },
    label: 'residual.addInPlace',
    params: [
      ['u32', acc.size],
      ['f32', scale],
    ],
    buffers: self ? { 1: acc } : { 1: acc, 2: x },
    workgroups: grid1d(gpu, acc.size, WG),
  });
}

/**
 * Backward of y = a + b: ∂L/∂a = ∂L/∂b = dy, so no kernel runs and both results ARE dy (the same tensor, not
 * copies). Release dy once, and do not write into da while db is still needed; a caller that must own two
 * buffers copies one with gpu.copy.
 */
export function residualBackward(_gpu: Gpu, dy: Tensor): { da: Tensor; db: Tensor } {
  expectDType(dy, 'f32', 'residualBackward dy');
  return { da: dy, db: dy };
}
