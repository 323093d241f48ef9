import shader from '../../shaders/adamw.wgsl?raw';
import {
  ArgumentError,
  expectDistinct,
  expectDType,
  expectFinite,
  expectShape,
  type Gpu,
  type Tensor,
} from '../gpu/index.ts';
import { elementwiseWorkgroup, grid1d } from './grid.ts';

export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** The golden model's optimiser (tests/fixtures/golden/tiny-gpt.json "adamw"). */
export const GOLDEN_ADAMW: AdamWConfig = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };

export interface AdamWParam {
  param: Tensor;
  grad: Tensor;
  /** First and second moments, same shape as param; start at zero. */
  m: Tensor;
  v: Tensor;
  /** Decoupled weight decay applies (the golden model: 2-D tensors only, not biases or LayerNorm gains). */
  decay: boolean;
}

function validateConfig(cfg: AdamWConfig, step: number): void {
  for (const k of ['lr', 'beta1', 'beta2', 'eps', 'weightDecay'] as const) expectFinite(cfg[k], `adamwStep ${k}`);
  if (cfg.lr < 0) throw new ArgumentError(`adamwStep lr must be ≥ 0, got ${cfg.lr}`);
  if (cfg.weightDecay < 0) throw new ArgumentError(`adamwStep weightDecay must be ≥ 0, got ${cfg.weightDecay}`);
  if (!(cfg.eps > 0)) throw new ArgumentError(`adamwStep eps must be > 0, got ${cfg.eps}`);
  for (const k of ['beta1', 'beta2'] as const) {
    if (!(cfg[k] >= 0 && cfg[k] < 1)) throw new ArgumentError(`adamwStep ${k} must be in [0, 1), got ${cfg[k]}`);
  }
  if (!Number.isInteger(step) || step < 1)
    throw new ArgumentError(`adamwStep step must be an integer ≥ 1 (1-based), got ${step}`);
}

/**
 * One AdamW step in place on param, m and v (decoupled weight decay before the Adam update; see
 * shaders/adamw.wgsl). `step` is 1-based; the bias corrections 1/(1−β^t) are computed here in float64.
 * `gradScale` ([1], e.g. clipGradNorm's scale) multiplies the gradient on the GPU without a host round trip;
 * when it is 0 or NaN/Inf the step is skipped and param, m, v stay bit-identical (the NaN/Inf-gradient policy).
 */
export function adamwStep(gpu: Gpu, p: AdamWParam, cfg: AdamWConfig, step: number, gradScale?: Tensor): void {
  validateConfig(cfg, step);
  expectDType(p.param, 'f32', 'adamwStep param');
  for (const k of ['grad', 'm', 'v'] as const) {
    expectDType(p[k], 'f32', `adamwStep ${k}`);
    expectShape(p[k], p.param.shape, `adamwStep ${k} (shape of param)`);
  }
  if (gradScale) {
    expectDType(gradScale, 'f32', 'adamwStep gradScale');
    expectShape(gradScale, [1], 'adamwStep gradScale');
  }
  expectDistinct('adamwStep', ['param', p.param], ['grad', p.grad], ['m', p.m], ['v', p.v], ['gradScale', gradScale]);

  const WG = elementwiseWorkgroup(gpu);
  const n = p.param.size;
  gpu.dispatch({
    shader,
    entry: gradScale ? 'step_scaled' : 'step',
    constants: { WG },
    label: 'adamw.step',
    params: [
      ['u32', n],
      ['f32', cfg.lr],
      ['f32', cfg.beta1],
      ['f32', cfg.beta2],
      ['f32', 1 - cfg.beta1],
      ['f32', 1 - cfg.beta2],
      ['f32', cfg.eps],
      ['f32', p.decay ? cfg.lr * cfg.weightDecay : 0],
      ['f32', 1 / (1 - cfg.beta1 ** step)],
      ['f32', 1 / (1 - cfg.beta2 ** step)],
    ],
    buffers: gradScale
      ? { 1: p.param, 2: p.grad, 3: p.m, 4: p.v, 5: gradScale }
      : { 1: p.param, 2: p.grad, 3: p.m, 4: p.v },
    workgroups: grid1d(gpu, n, WG),
  });
}
