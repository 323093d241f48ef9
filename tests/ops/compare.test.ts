import { describe, expect, it } from 'vitest';
import { compare, describe as describeComparison } from '../../src/ops/compare.ts';
import { checkGelu } from '../../src/ops/gelu.check.ts';
import { gelu } from '../../src/ops/gelu.ts';
import { geluRef } from '../../src/ops/gelu.ref.ts';
import { Rng } from '../../src/ops/rng.ts';
import { testGpu } from '../gpu-fixture.ts';

describe('compare (the checker every kernel test relies on)', () => {
  const tol = { atol: 1e-6, rtol: 1e-5 };

  it('passes identical and within-tolerance values', () => {
    const want = Float64Array.from([0, 1, -2, 1e3]);
    const got = Float32Array.from([0, 1 + 5e-6, -2, 1e3 * (1 + 5e-6)]);
    expect(compare('x', got, want, tol).pass).toBe(true);
  });

  it('fails on one value just outside atol + rtol·|ref| and reports it', () => {
    const want = new Float64Array(100).fill(1);
    const got = new Float32Array(100).fill(1);
    got[37] = 1 + 3e-5; // bound is 1e-6 + 1e-5 = 1.1e-5
    const c = compare('x', got, want, tol);
    expect(c.pass).toBe(false);
    expect(c.mismatchCount).toBe(1);
    expect(c.firstMismatches[0].index).toBe(37);
    expect(c.worstIndex).toBe(37);
    expect(c.maxAbsErr).toBeCloseTo(3e-5, 6);
    expect(describeComparison(c)).toMatch(/\[37\] got/);
  });

  it('fails on NaN, Inf and length mismatch', () => {
    const want = Float64Array.from([1, 2, 3]);
    expect(compare('nan', Float32Array.from([1, NaN, 3]), want, tol).pass).toBe(false);
    expect(compare('inf', Float32Array.from([1, 2, Infinity]), want, tol).pass).toBe(false);
    expect(compare('short', Float32Array.from([1, 2]), want, tol).pass).toBe(false);
  });

  it('catches a deliberately perturbed GPU output (one element off by 1e-4)', async () => {
    const gpu = await testGpu();
    const x = new Rng(5).f32(45 * 65, -3, 3);
    const got = (await gpu.read(gelu(gpu, gpu.upload(x, [45, 65])))) as Float32Array;
    const want = geluRef(x);
    expect(compare('gelu unperturbed', got, want, tol).pass).toBe(true);
    got[1234] += 1e-4;
    const c = compare('gelu perturbed', got, want, tol);
    expect(c.pass).toBe(false);
    expect(c.firstMismatches.map((m) => m.index)).toEqual([1234]);
  });

  it('the op checks report failure when the kernel is wrong (shader swapped for a broken one)', async () => {
    const gpu = await testGpu();
    // Run the real check against a GPU whose dispatches of gelu.forward are rewritten to a wrong formula.
    const original = gpu.dispatch.bind(gpu);
    gpu.dispatch = (d) =>
      original(d.entry === 'forward' ? { ...d, shader: d.shader.replace('out[i] = v *', 'out[i] = 1.001 * v *') } : d);
    try {
      const results = await checkGelu(gpu, 'small');
      expect(results.find((r) => r.name.startsWith('gelu.forward'))?.pass).toBe(false);
      expect(results.find((r) => r.name.startsWith('gelu.backward'))?.pass).toBe(true);
    } finally {
      gpu.dispatch = original;
    }
  });
});
