import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError, type Tensor } from '../../src/gpu/index.ts';
import { adamwStep, GOLDEN_ADAMW } from '../../src/ops/adamw.ts';
import { checkGradClip } from '../../src/ops/gradclip.check.ts';
import { clipGradNorm, gradNorm, scaleInPlace } from '../../src/ops/gradclip.ts';
import { gradNormBackwardRef, gradNormRef } from '../../src/ops/gradclip.ref.ts';
import { ArgumentError } from '../../src/gpu/index.ts';
import { Rng } from '../../src/ops/rng.ts';
import { checkGradient } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

function split(x: Float64Array, sizes: number[]): Float64Array[] {
  let o = 0;
  return sizes.map((n) => x.slice(o, (o += n)));
}

function bits(a: ArrayLike<number>): number[] {
  return [...new Uint32Array(Float32Array.from(a).buffer)];
}

describe('gradclip', () => {
  it('reference: ∂‖g‖/∂g = g/‖g‖ matches central finite differences across several tensors', () => {
    const sizes = [1, 7, 12, 3];
    const x = Float64Array.from({ length: 23 }, (_, i) => Math.sin(1.3 * i + 0.2) * (1 + (i % 4)));
    const analytic = new Float64Array(gradNormBackwardRef(split(x, sizes)).flatMap((g) => [...g]));
    expectAllPass([checkGradient('gradNorm d/dg', (v) => gradNormRef(split(v, sizes)), x, analytic)]);
  });

  it('WGSL norm, clip scale and scaleInPlace match the float64 reference', async () => {
    expectAllPass(await checkGradClip(await testGpu(), 'full'));
  });

  it(
    'is bit-identical across runs over many tensors of mixed sizes (more partial slots than one ' + 'workgroup)',
    async () => {
      const gpu = await testGpu();
      const rng = new Rng(3);
      // 300 tensors → 300 partial slots (> 256, so the final reduce loops), plus one of many chunks.
      const host = Array.from({ length: 300 }, (_, i) => {
        const g = rng.f32(1 + ((i * 37) % 50));
        for (let j = 0; j < g.length; j++) g[j] *= 10 ** rng.uniform(-4, 3); // wide range: order matters
        return g;
      });
      host.push(rng.f32(300_001, -5, 5));
      const grads = host.map((h) => gpu.upload(h, [h.length]));
      const runs: number[][] = [];
      for (let r = 0; r < 3; r++) {
        const norm = gradNorm(gpu, grads);
        const clip = clipGradNorm(gpu, grads, 1);
        const [n1, n2, s] = [await gpu.read(norm), await gpu.read(clip.norm), await gpu.read(clip.scale)];
        runs.push([...bits(n1), ...bits(n2), ...bits(s)]);
        gpu.release(norm, clip.norm, clip.scale);
      }
      expect(runs[1]).toEqual(runs[0]);
      expect(runs[2]).toEqual(runs[0]);
      expect(runs[0][0]).toBe(runs[0][1]); // gradNorm and clipGradNorm agree to the bit
      const want = gradNormRef(host);
      expect(Math.abs(new Float32Array(new Uint32Array([runs[0][0]]).buffer)[0] - want) / want).toBeLessThan(1e-5);
      gpu.release(...grads);
    },
  );

  it('a 1-element tensor gives |x|; an all-zero set gives norm 0 and scale 1', async () => {
    const gpu = await testGpu();
    const one = gpu.upload([-3], [1]);
    expect([...(await gpu.read(gradNorm(gpu, [one])))]).toEqual([3]);
    const zeros = [gpu.zeros([1]), gpu.zeros([45, 65]), gpu.zeros([5000])];
    const { norm, scale } = clipGradNorm(gpu, zeros, 1);
    expect([...(await gpu.read(norm))]).toEqual([0]);
    expect([...(await gpu.read(scale))]).toEqual([1]);
    gpu.release(one, norm, scale, ...zeros);
  });

  it(
    'NaN/Inf gradients: norm is NaN/Inf, scale is 0, and AdamW with that scale leaves the weights ' + 'untouched',
    async () => {
      const gpu = await testGpu();
      const rng = new Rng(9);
      const cases: Array<[string, number, (n: number) => boolean]> = [
        ['NaN', Number.NaN, Number.isNaN],
        ['+Inf', Infinity, (n) => n === Infinity],
        ['-Inf', -Infinity, (n) => n === Infinity],
        ['overflowing 1e20', 1e20, (n) => n === Infinity], // Σg² exceeds f32 max
      ];
      for (const [what, bad, normIs] of cases) {
        const g0 = rng.f32(45 * 65);
        const g1 = rng.f32(5000);
        g1[4321] = bad;
        const grads = [gpu.upload(g0, [45, 65]), gpu.upload(g1, [5000])];
        const n = (await gpu.read(gradNorm(gpu, grads)))[0];
        expect(normIs(n), `${what}: norm ${n}`).toBe(true);
        const { norm, scale } = clipGradNorm(gpu, grads, 1);
        expect(normIs((await gpu.read(norm))[0]), what).toBe(true);
        expect([...(await gpu.read(scale))], what).toEqual([0]);

        // The clipped AdamW step is skipped: param, m and v keep their exact bits (including a later step).
        const w = rng.f32(5000);
        const mv = rng.f32(5000, 0, 1);
        const param = gpu.upload(w, [5000]);
        const m = gpu.upload(mv, [5000]);
        const v = gpu.upload(mv, [5000]);
        adamwStep(gpu, { param, grad: grads[1], m, v, decay: true }, GOLDEN_ADAMW, 3, scale);
        expect(bits(await gpu.read(param)), what).toEqual(bits(w));
        expect(bits(await gpu.read(m)), what).toEqual(bits(mv));
        expect(bits(await gpu.read(v)), what).toEqual(bits(mv));
        gpu.release(param, m, v, norm, scale, ...grads);
      }
    },
  );

  it('rejects an empty set, wrong dtypes, a bad maxNorm and a bad scale tensor with typed errors', async () => {
    const gpu = await testGpu();
    const g = gpu.zeros([4, 5]);
    const ints = gpu.zeros([3], 'i32');
    const s2 = gpu.zeros([2]);
    const s1 = gpu.zeros([1]);
    expect(() => gradNorm(gpu, [])).toThrow(ShapeError);
    expect(() => clipGradNorm(gpu, [], 1)).toThrow(ShapeError);
    expect(() => gradNorm(gpu, [g, ints])).toThrow(DTypeError);
    for (const bad of [0, -1, Number.NaN, Infinity]) expect(() => clipGradNorm(gpu, [g], bad)).toThrow(ArgumentError);
    expect(() => scaleInPlace(gpu, g, s2)).toThrow(ShapeError);
    expect(() => scaleInPlace(gpu, ints, s1)).toThrow(DTypeError);
    expect(() => scaleInPlace(gpu, s1, s1)).toThrow(ArgumentError);
    await gpu.sync();
    gpu.release(g, ints, s2, s1 as Tensor);
  });
});
