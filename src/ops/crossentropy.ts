import shader from '../../shaders/crossentropy.wgsl?raw';
import {
  ArgumentError,
  expectDType,
  expectRank,
  expectShape,
  type Gpu,
  type Param,
  type Tensor,
} from '../gpu/index.ts';
import { grid1d } from './grid.ts';
import { rowWorkgroup } from './layernorm.ts';

export interface CrossEntropyResult {
  /** [N] per-row loss, 0 where the target is the ignore index. */
  losses: Tensor;
  /** [1] mean of `losses` over the non-ignored rows (0 if every row is ignored). */
  loss: Tensor;
  /** [N, V] gradient of `loss`: (softmax − onehot)/count, zero rows where ignored. Absent when withGrad is false. */
  dlogits?: Tensor;
}

/**
 * Fused softmax + cross-entropy (forward and, by default, backward in the same pass over the logits), with
 * the count of non-ignored rows and the mean computed on the GPU. Numerically stable for any logit magnitude.
 * A target outside [0, V) other than the ignore index gives a NaN loss (the kernel cannot throw); data
 * loaders validate token ids on the host.
 */
export function crossEntropy(
  gpu: Gpu,
  logits: Tensor,
  targets: Tensor,
  opts: { ignoreIndex?: number; withGrad?: boolean } = {},
): CrossEntropyResult {
  const ignoreIndex = opts.ignoreIndex ?? -1;
  const withGrad = opts.withGrad ?? true;
  expectDType(logits, 'f32', 'crossEntropy logits');
  expectDType(targets, 'i32', 'crossEntropy targets');
  const [n, v] = expectRank(logits, 2, 'crossEntropy logits');
  expectShape(targets, [n], 'crossEntropy targets');
  if (!Number.isInteger(ignoreIndex) || ignoreIndex < -(2 ** 31) || ignoreIndex >= 2 ** 31) {
    throw new ArgumentError(`crossEntropy: ignoreIndex must be a 32-bit integer, got ${ignoreIndex}`);
  }
  const params: Param[] = [
    ['u32', n],
    ['u32', v],
    ['i32', ignoreIndex],
  ];
  const WG = rowWorkgroup(gpu, 256); // single-workgroup reductions over N
  const count = gpu.empty([1], 'u32', 'crossentropy.count');
  gpu.dispatch({
    shader,
    entry: 'count',
    constants: { WG },
    label: 'crossentropy.count',
    params,
    buffers: { 2: targets, 3: count },
    workgroups: [1],
  });
  const losses = gpu.empty([n], 'f32', 'crossentropy.losses');
  const rowWG = rowWorkgroup(gpu, v);
  let dlogits: Tensor | undefined;
  if (withGrad) {
    dlogits = gpu.empty([n, v], 'f32', 'crossentropy.dlogits');
    gpu.dispatch({
      shader,
      entry: 'fused',
      constants: { WG: rowWG },
      label: 'crossentropy.fused',
      params,
      buffers: { 1: logits, 2: targets, 4: count, 5: losses, 8: dlogits },
      workgroups: grid1d(gpu, n, 1),
    });
  } else {
    gpu.dispatch({
      shader,
      entry: 'forward',
      constants: { WG: rowWG },
      label: 'crossentropy.forward',
      params,
      buffers: { 1: logits, 2: targets, 5: losses },
      workgroups: grid1d(gpu, n, 1),
    });
  }
  const loss = gpu.empty([1], 'f32', 'crossentropy.loss');
  gpu.dispatch({
    shader,
    entry: 'mean',
    constants: { WG },
    label: 'crossentropy.mean',
    params,
    buffers: { 4: count, 6: losses, 7: loss },
    workgroups: [1],
  });
  gpu.release(count);
  return dlogits ? { losses, loss, dlogits } : { losses, loss };
}
