import type { Gpu } from '../gpu/index.ts';
import { adamwStep, GOLDEN_ADAMW } from './adamw.ts';
import { adamwStepRef, type AdamWState } from './adamw.ref.ts';
import { ELEMENTWISE_TOL, expectClose, shapeName, type CheckSize } from './check-kit.ts';
import type { Comparison } from './compare.ts';
import { Rng } from './rng.ts';

const STEPS = 5;

/** Gradients spanning several orders of magnitude, so both the eps-dominated and the normal regime occur. */
function randomGrad(rng: Rng, n: number): Float32Array {
  const g = new Float32Array(n);
  for (let i = 0; i < n; i++) g[i] = rng.uniform() * 10 ** rng.uniform(-6, 1);
  return g;
}

/**
 * STEPS AdamW steps from m = v = 0 with fresh random gradients each step, on the GPU and in the float64
 * reference; compares param, m and v at the end. Variants: with decay and no gradScale; without decay and
 * with a gradScale tensor (as clipping supplies).
 */
export async function checkAdamW(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(41);
  const shapes = size === 'small' ? [[7, 13]] : [[1], [45, 65], [513, 1031]];
  const out: Comparison[] = [];
  for (const shape of shapes) {
    const n = shape[0] * (shape[1] ?? 1);
    for (const [decay, scale] of [
      [true, undefined],
      [false, 0.37],
    ] as const) {
      const name = `${shapeName(shape)} decay=${decay}${scale === undefined ? '' : ` gradScale=${scale}`}`;
      const w0 = rng.f32(n);
      const param = gpu.upload(w0, shape);
      const m = gpu.zeros(shape);
      const v = gpu.zeros(shape);
      const grad = gpu.empty(shape);
      const gradScale = scale === undefined ? undefined : gpu.upload([scale], [1]);
      let ref: AdamWState = { param: Float64Array.from(w0), m: new Float64Array(n), v: new Float64Array(n) };
      for (let t = 1; t <= STEPS; t++) {
        const g = randomGrad(rng, n);
        gpu.write(grad, g);
        adamwStep(gpu, { param, grad, m, v, decay }, GOLDEN_ADAMW, t, gradScale);
        ref = adamwStepRef(ref, g, decay, GOLDEN_ADAMW, t, scale === undefined ? 1 : Math.fround(scale));
      }
      out.push(await expectClose(gpu, `adamw.param ${name} after ${STEPS} steps`, param, ref.param, ELEMENTWISE_TOL));
      out.push(await expectClose(gpu, `adamw.m ${name}`, m, ref.m, ELEMENTWISE_TOL));
      out.push(await expectClose(gpu, `adamw.v ${name}`, v, ref.v, ELEMENTWISE_TOL));
      gpu.release(grad, gradScale);
    }
  }
  return out;
}
