import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { checkResidual } from '../../src/ops/residual.check.ts';
import { ArgumentError } from '../../src/gpu/index.ts';
import { addInPlace, residualAdd, residualBackward } from '../../src/ops/residual.ts';
import { residualAddRef, residualBackwardRef } from '../../src/ops/residual.ref.ts';
import { checkGradient, dot, projection } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('residual', () => {
  it('reference backward (identity to both inputs) matches central finite differences', () => {
    const a = Float64Array.from({ length: 30 }, (_, i) => Math.sin(i) * 3);
    const b = Float64Array.from({ length: 30 }, (_, i) => Math.cos(i * 0.7) * 2);
    const w = projection(a.length, 5);
    const { da, db } = residualBackwardRef(w);
    expectAllPass([
      checkGradient('residual da', (x) => dot(residualAddRef(x, b), w), a, da),
      checkGradient('residual db', (x) => dot(residualAddRef(a, x), w), b, db),
    ]);
  });

  it('WGSL add, addInPlace and backward match the float64 reference', async () => {
    expectAllPass(await checkResidual(await testGpu(), 'full'));
  });

  it('residualBackward returns dy itself for both inputs, with no kernel and no copy', async () => {
    const gpu = await testGpu();
    const dy = gpu.upload([1, 2, 3], [3]);
    const before = gpu.dispatches;
    const { da, db } = residualBackward(gpu, dy);
    expect(da).toBe(dy);
    expect(db).toBe(dy);
    expect(gpu.dispatches).toBe(before);
    gpu.release(dy);
  });

  it('rejects mismatched shapes, wrong dtypes and a non-finite scale with typed errors', async () => {
    const gpu = await testGpu();
    const a = gpu.zeros([4, 5]);
    const b = gpu.zeros([5, 4]);
    const c = gpu.zeros([20]);
    const ints = gpu.zeros([4, 5], 'i32');
    expect(() => residualAdd(gpu, a, b)).toThrow(ShapeError);
    expect(() => residualAdd(gpu, a, c)).toThrow(ShapeError);
    expect(() => residualAdd(gpu, a, ints)).toThrow(DTypeError);
    expect(() => addInPlace(gpu, a, b)).toThrow(ShapeError);
    expect(() => addInPlace(gpu, ints, a)).toThrow(DTypeError);
    expect(() => addInPlace(gpu, a, a, Number.NaN)).toThrow(ArgumentError);
    expect(() => addInPlace(gpu, a, a, Infinity)).toThrow(ArgumentError);
    expect(() => residualBackward(gpu, ints)).toThrow(DTypeError);
    await gpu.sync();
    gpu.release(a, b, c, ints);
  });
});
