import shader from '../../shaders/residual.wgsl?raw';
import { expectDType, expectShape, TesseraGpuError, type Gpu, type Tensor } from '../gpu/index.ts';
import { elementwiseWorkgroup, grid1d } from './grid.ts';

/**
 * A scalar argument an op cannot use (non-finite learning rate, step < 1, max norm ≤ 0), or tensors that
 * must be distinct but share a buffer (WebGPU cannot bind one buffer as writable and readable in a pass).
 * Shared by the residual, AdamW and gradient-clipping ops.
 */
export class ArgumentError extends TesseraGpuError {
  constructor(message: string) {
    super('argument', message);
  }
}

export function expectFinite(value: number, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ArgumentError(`${what} must be a finite number, got ${value}`);
}

export function expectDistinct(what: string, ...named: Array<[string, Tensor | undefined]>): void {
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const [ni, ti] = named[i];
      const [nj, tj] = named[j];
      if (ti && tj && ti.buffer === tj.buffer) throw new ArgumentError(`${what}: ${ni} and ${nj} must be distinct tensors`);
    }
  }
}

/** y = a + b, elementwise; a and b must have the same shape (no broadcasting: a residual never needs it). */
export function residualAdd(gpu: Gpu, a: Tensor, b: Tensor): Tensor {
  expectDType(a, 'f32', 'residualAdd a');
  expectDType(b, 'f32', 'residualAdd b');
  expectShape(b, a.shape, 'residualAdd b (shape of a)');
  const y = gpu.empty(a.shape, 'f32', 'residual.y');
  const WG = elementwiseWorkgroup(gpu);
  gpu.dispatch({
    shader, entry: 'add', constants: { WG }, label: 'residual.add',
    params: [['u32', a.size]], buffers: { 1: a, 2: b, 3: y }, workgroups: grid1d(gpu, a.size, WG),
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
    shader, entry: self ? 'add_scaled_self' : 'add_scaled', constants: { WG }, label: 'residual.addInPlace',
    params: [['u32', acc.size], ['f32', scale]], buffers: self ? { 1: acc } : { 1: acc, 2: x },
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
