import shader from '../../shaders/gelu.wgsl?raw';
import { expectDType, ShapeError, type Gpu, type Tensor } from '../gpu/index.ts';
import { elementwiseWorkgroup, grid1d } from './grid.ts';

export function gelu(gpu: Gpu, x: Tensor): Tensor {
  expectDType(x, 'f32', 'gelu input');
  const y = gpu.empty(x.shape, 'f32', 'gelu.y');
  const WG = elementwiseWorkgroup(gpu);
  gpu.dispatch({
    shader,
    entry: 'forward',
    constants: { WG },
    label: 'gelu.forward',
    params: [['u32', x.size]],
    buffers: { 1: x, 2: y },
    workgroups: grid1d(gpu, x.size, WG),
  });
  return y;
}

export function geluBackward(gpu: Gpu, x: Tensor, dy: Tensor): Tensor {
  expectDType(x, 'f32', 'gelu input');
  expectDType(dy, 'f32', 'gelu dy');
  if (dy.size !== x.size) throw new ShapeError(`geluBackward: dy has ${dy.size} elements, x has ${x.size}`);
  const dx = gpu.empty(x.shape, 'f32', 'gelu.dx');
  const WG = elementwiseWorkgroup(gpu);
  gpu.dispatch({
    shader,
    entry: 'backward',
    constants: { WG },
    label: 'gelu.backward',
    params: [['u32', x.size]],
    buffers: { 1: x, 2: dx, 3: dy },
    workgroups: grid1d(gpu, x.size, WG),
  });
  return dx;
}
