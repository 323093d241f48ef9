import { describe, expect, it } from 'vitest';
import { ArgumentError, DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { checkCrossEntropy } from '../../src/ops/crossentropy.check.ts';
import { crossEntropy } from '../../src/ops/crossentropy.ts';
import { crossEntropyRef } from '../../src/ops/crossentropy.ref.ts';
import { Rng } from '../../src/ops/rng.ts';
import { checkGradient } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('crossentropy', () => {
  it('reference dlogits match central finite differences of the mean loss, ignored rows included', () => {
    const [n, v] = [5, 7];
    const rng = new Rng(3);
    const logits = Float64Array.from({ length: n * v }, () => rng.uniform(-3, 3));
    const targets = Int32Array.from([2, -1, 6, 0, -1]);
    const ref = crossEntropyRef(logits, targets, n, v);
    expect(ref.count).toBe(3);
    // Every element (35 ≤ 48 samples), so the ignored rows' zero gradient is checked too.
    expectAllPass([
      checkGradient('crossentropy dlogits', (z) => crossEntropyRef(z, targets, n, v).loss, logits, ref.dlogits),
    ]);
    const big = Float64Array.from(logits, (z) => z * 3000); // stable for huge logits
    const refBig = crossEntropyRef(big, targets, n, v);
    expect(Number.isFinite(refBig.loss)).toBe(true);
  });

  it('WGSL fused forward/backward matches the float64 reference', async () => {
    const results = await checkCrossEntropy(await testGpu(), 'full');
    expectAllPass(results);
  });

  it('is deterministic (bit-identical on repeat)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(8);
    const [n, v] = [40, 1001];
    const lt = gpu.upload(rng.f32(n * v, -5, 5), [n, v]);
    const tt = gpu.upload(rng.ints(n, v), [n]);
    const run = async () => {
      const r = crossEntropy(gpu, lt, tt);
      const out = [await gpu.read(r.loss), await gpu.read(r.losses), await gpu.read(r.dlogits!)];
      gpu.release(r.loss, r.losses, r.dlogits);
      return out;
    };
    expect(await run()).toEqual(await run());
    gpu.release(lt, tt);
  });

  it('marks a target outside [0, V) that is not ignored with a NaN loss', async () => {
    const gpu = await testGpu();
    const lt = gpu.upload(new Float32Array(3 * 5), [3, 5]);
    const tt = gpu.upload(Int32Array.from([1, 5, -1]), [3]);
    const r = crossEntropy(gpu, lt, tt);
    const losses = await gpu.read(r.losses);
    expect(losses[0]).toBeCloseTo(Math.log(5), 5);
    expect(Number.isNaN(losses[1])).toBe(true);
    expect(losses[2]).toBe(0);
    expect(Number.isNaN((await gpu.read(r.loss))[0])).toBe(true);
    gpu.release(lt, tt, r.loss, r.losses, r.dlogits);
  });

  it('rejects bad shapes and dtypes with typed errors', async () => {
    const gpu = await testGpu();
    const logits = gpu.upload(new Float32Array(12), [3, 4]);
    const logits1 = gpu.upload(new Float32Array(12), [12]);
    const logitsI = gpu.upload(new Int32Array(12), [3, 4]);
    const t3 = gpu.upload(new Int32Array(3), [3]);
    const t4 = gpu.upload(new Int32Array(4), [4]);
    const tf = gpu.upload(new Float32Array(3), [3]);
    const tu = gpu.upload(new Uint32Array(3), [3]);
    expect(() => crossEntropy(gpu, logits, tf)).toThrow(DTypeError);
    expect(() => crossEntropy(gpu, logits, tu)).toThrow(DTypeError);
    expect(() => crossEntropy(gpu, logitsI, t3)).toThrow(DTypeError);
    expect(() => crossEntropy(gpu, logits, t4)).toThrow(ShapeError);
    expect(() => crossEntropy(gpu, logits1, t3)).toThrow(ShapeError);
    expect(() => crossEntropy(gpu, logits, t3, { ignoreIndex: 0.5 })).toThrow(ArgumentError);
    gpu.release(logits, logits1, logitsI, t3, t4, tf, tu);
  });
});
