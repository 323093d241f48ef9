/** float64 reference for one AdamW step with decoupled weight decay (the golden model's order of operations). */
import type { AdamWConfig } from './adamw.ts';

export interface AdamWState {
  param: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/**
 * Returns the state after step `step` (1-based) with gradient grad·gradScale. gradScale 0 or non-finite skips
 * the step (state returned unchanged), matching clipGradNorm's policy for NaN/Inf gradients.
 */
export function adamwStepRef(
  state: { param: ArrayLike<number>; m: ArrayLike<number>; v: ArrayLike<number> },
  grad: ArrayLike<number>,
  decay: boolean,
  cfg: AdamWConfig,
  step: number,
  gradScale = 1,
): AdamWState {
  const param = Float64Array.from(state.param);
  const m = Float64Array.from(state.m);
  const v = Float64Array.from(state.v);
  if (gradScale === 0 || !Number.isFinite(gradScale)) return { param, m, v };
  const bc1 = 1 - cfg.beta1 ** step;
  const bc2 = 1 - cfg.beta2 ** step;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i] * gradScale;
    if (decay) param[i] -= cfg.lr * cfg.weightDecay * param[i];
    m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g;
    v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g;
    const mHat = m[i] / bc1;
    const vHat = v[i] / bc2;
    param[i] -= (cfg.lr * mHat) / (Math.sqrt(vHat) + cfg.eps);
  }
  return { param, m, v };
}
