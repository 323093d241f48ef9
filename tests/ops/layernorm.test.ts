import { describe, expect, it } from 'vitest';
import { ArgumentError, DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { checkLayernorm } from '../../src/ops/layernorm.check.ts';
import { layernorm, layernormBackward } from '../../src/ops/layernorm.ts';
import { layernormBackwardRef, layernormRef } from '../../src/ops/layernorm.ref.ts';
import { Rng } from '../../src/ops/rng.ts';
import { checkGradient, dot, projection } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('layernorm', () => {
  it('reference backward matches central finite differences (dx, dgamma, dbeta)', () => {
    const n = 4;
    const c = 7;
    const rng = new Rng(5);
    const x = Float64Array.from({ length: n * c }, () => 1.5 + 2 * rng.normal());
    const gamma = Float64Array.from({ length: c }, () => rng.uniform(0.5, 1.5));
    const beta = Float64Array.from({ length: c }, () => rng.uniform(-0.5, 0.5));
    const w = projection(n * c, 3);
    const { dx, dgamma, dbeta } = layernormBackwardRef(x, gamma, w, n, c);
    expectAllPass([
      checkGradient('layernorm dx', (v) => dot(layernormRef(v, gamma, beta, n, c).y, w), x, dx),
      checkGradient('layernorm dgamma', (v) => dot(layernormRef(x, v, beta, n, c).y, w), gamma, dgamma),
      checkGradient('layernorm dbeta', (v) => dot(layernormRef(x, gamma, v, n, c).y, w), beta, dbeta),
    ]);
  });

  it('WGSL forward and backward match the float64 reference', async () => {
    const results = await checkLayernorm(await testGpu(), 'full');
    expectAllPass(results);
  });

  it('is deterministic (bit-identical on repeat)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(9);
    const [n, c] = [200, 96];
    const x = gpu.upload(rng.f32(n * c, -3, 3), [n, c]);
    const g = gpu.upload(rng.f32(c), [c]);
    const b = gpu.upload(rng.f32(c), [c]);
    const dy = gpu.upload(rng.f32(n * c), [n, c]);
    const run = async () => {
      const f = layernorm(gpu, x, g, b);
      const bw = layernormBackward(gpu, x, g, f.mean, f.rstd, dy);
      const out = [await gpu.read(f.y), await gpu.read(bw.dx), await gpu.read(bw.dgamma), await gpu.read(bw.dbeta)];
      gpu.release(f.y, f.mean, f.rstd, bw.dx, bw.dgamma, bw.dbeta);
      return out;
    };
    expect(await run()).toEqual(await run());
    gpu.release(x, g, b, dy);
  });

  it('rejects bad shapes and dtypes with typed errors', async () => {
    const gpu = await testGpu();
    const x = gpu.upload(new Float32Array(12), [3, 4]);
    const g = gpu.upload(new Float32Array(4), [4]);
    const g5 = gpu.upload(new Float32Array(5), [5]);
    const xi = gpu.upload(new Int32Array(12), [3, 4]);
    const x1 = gpu.upload(new Float32Array(12), [12]);
    const m = gpu.upload(new Float32Array(3), [3]);
    expect(() => layernorm(gpu, x, g5, g)).toThrow(ShapeError);
    expect(() => layernorm(gpu, x, g, g5)).toThrow(ShapeError);
    expect(() => layernorm(gpu, x1, g, g)).toThrow(ShapeError);
    expect(() => layernorm(gpu, xi, g, g)).toThrow(DTypeError);
    expect(() => layernorm(gpu, x, g, g, 0)).toThrow(ArgumentError);
    expect(() => layernormBackward(gpu, x, g, m, m, x1)).toThrow(ShapeError);
    expect(() => layernormBackward(gpu, x, g, g, m, x)).toThrow(ShapeError);
    expect(() => layernormBackward(gpu, x, g, m, m, xi)).toThrow(DTypeError);
    gpu.release(x, g, g5, xi, x1, m);
  });
});
