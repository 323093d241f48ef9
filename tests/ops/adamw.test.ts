import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { checkAdamW } from '../../src/ops/adamw.check.ts';
import { adamwStep, GOLDEN_ADAMW, type AdamWConfig } from '../../src/ops/adamw.ts';
import { adamwStepRef, type AdamWState } from '../../src/ops/adamw.ref.ts';
import { ELEMENTWISE_TOL } from '../../src/ops/check-kit.ts';
import { compare } from '../../src/ops/compare.ts';
import { clipGradNorm } from '../../src/ops/gradclip.ts';
import { clipScaleRef, gradNormRef } from '../../src/ops/gradclip.ref.ts';
import { ArgumentError } from '../../src/gpu/index.ts';
import { Rng } from '../../src/ops/rng.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('adamw', () => {
  it('reference follows the golden order: decoupled decay first, then the bias-corrected Adam update', () => {
    const cfg = GOLDEN_ADAMW;
    // Step 1 from m = v = 0: m̂ = g, v̂ = g², so w ← w(1 − lr·wd) − lr·g/(|g| + eps).
    const s1 = adamwStepRef({ param: [1, 1], m: [0, 0], v: [0, 0] }, [0.5, -2], true, cfg, 1);
    expect(s1.param[0]).toBeCloseTo(1 - 0.001 - 0.01 * (0.5 / (0.5 + 1e-8)), 15);
    expect(s1.param[1]).toBeCloseTo(1 - 0.001 + 0.01 * (2 / (2 + 1e-8)), 15);
    expect(s1.m[0]).toBeCloseTo(0.05, 15);
    expect(s1.v[1]).toBeCloseTo(0.004, 15);
    // Without decay, and step 2 with its own bias corrections.
    const s2 = adamwStepRef(s1, [0.25, 0], false, cfg, 2);
    const m = 0.9 * 0.05 + 0.1 * 0.25;
    const v = 0.999 * 0.00025 + 0.001 * 0.0625;
    expect(s2.param[0]).toBeCloseTo(
      s1.param[0] - (0.01 * (m / (1 - 0.81))) / (Math.sqrt(v / (1 - 0.999 ** 2)) + 1e-8),
      15,
    );
    // gradScale 0 skips the step entirely.
    expect([...adamwStepRef(s1, [1, 1], true, cfg, 2, 0).param]).toEqual([...s1.param]);
  });

  it('WGSL matches the float64 reference over 5 steps, with and without decay and gradScale', async () => {
    expectAllPass(await checkAdamW(await testGpu(), 'full'));
  });

  it(
    'takes the clipping scale from clipGradNorm on the GPU (no host round trip) and matches the ' + 'reference',
    async () => {
      const gpu = await testGpu();
      const rng = new Rng(17);
      const shapes = [[45, 65], [65], [1]];
      const state = shapes.map((s) => {
        const n = s[0] * (s[1] ?? 1);
        const w = rng.f32(n);
        return {
          shape: s,
          w,
          param: gpu.upload(w, s),
          m: gpu.zeros(s),
          v: gpu.zeros(s),
          ref: { param: Float64Array.from(w), m: new Float64Array(n), v: new Float64Array(n) } as AdamWState,
        };
      });
      const results = [];
      for (let t = 1; t <= 3; t++) {
        const host = state.map((s) => rng.f32(s.w.length, -3, 3));
        const grads = host.map((h, i) => gpu.upload(h, shapes[i]));
        const { norm, scale } = clipGradNorm(gpu, grads, 1);
        const refScale = clipScaleRef(gradNormRef(host), 1);
        expect(refScale).toBeLessThan(0.1); // clipping bites
        state.forEach((s, i) => {
          adamwStep(
            gpu,
            { param: s.param, grad: grads[i], m: s.m, v: s.v, decay: s.shape.length === 2 },
            GOLDEN_ADAMW,
            t,
            scale,
          );
          s.ref = adamwStepRef(s.ref, host[i], s.shape.length === 2, GOLDEN_ADAMW, t, refScale);
        });
        gpu.release(norm, scale, ...grads);
      }
      for (const [i, s] of state.entries()) {
        results.push(compare(`clipped adamw param ${i}`, await gpu.read(s.param), s.ref.param, ELEMENTWISE_TOL));
        results.push(compare(`clipped adamw m ${i}`, await gpu.read(s.m), s.ref.m, ELEMENTWISE_TOL));
        results.push(compare(`clipped adamw v ${i}`, await gpu.read(s.v), s.ref.v, { atol: 1e-9, rtol: 1e-4 }));
        gpu.release(s.param, s.m, s.v);
      }
      expectAllPass(results);
    },
  );

  it(
    'rejects shape and dtype mismatches, aliasing, step < 1 and non-finite hyperparameters with typed ' + 'errors',
    async () => {
      const gpu = await testGpu();
      const t = () => gpu.zeros([4, 5]);
      const p = { param: t(), grad: t(), m: t(), v: t(), decay: true };
      const other = gpu.zeros([5, 4]);
      const ints = gpu.zeros([4, 5], 'i32');
      const s1 = gpu.upload([1], [1]);
      const s2 = gpu.zeros([2]);
      const cfg = GOLDEN_ADAMW;
      const step =
        (q: Partial<typeof p>, c: Partial<AdamWConfig> = {}, k = 1, s?: typeof s1) =>
        () =>
          adamwStep(gpu, { ...p, ...q }, { ...cfg, ...c }, k, s);

      expect(step({})).not.toThrow();
      expect(step({}, {}, 2, s1)).not.toThrow();
      for (const k of ['grad', 'm', 'v'] as const) {
        expect(step({ [k]: other })).toThrow(ShapeError);
        expect(step({ [k]: ints })).toThrow(DTypeError);
      }
      expect(step({ param: ints })).toThrow(DTypeError);
      expect(step({ m: p.v })).toThrow(ArgumentError);
      expect(step({ grad: p.param })).toThrow(ArgumentError);
      expect(step({}, {}, 1, s2)).toThrow(ShapeError);
      for (const k of [0, -1, 1.5, Number.NaN]) expect(step({}, {}, k)).toThrow(ArgumentError);
      for (const lr of [Number.NaN, Infinity, -Infinity, -0.1]) expect(step({}, { lr })).toThrow(ArgumentError);
      expect(step({}, { beta1: 1 })).toThrow(ArgumentError);
      expect(step({}, { beta2: -0.1 })).toThrow(ArgumentError);
      expect(step({}, { eps: 0 })).toThrow(ArgumentError);
      expect(step({}, { weightDecay: Number.NaN })).toThrow(ArgumentError);
      await gpu.sync();
      gpu.release(p.param, p.grad, p.m, p.v, other, ints, s1, s2);
    },
  );
});
