import { describe, it } from 'vitest';
import { checkGelu } from '../../src/ops/gelu.check.ts';
import { geluBackwardRef, geluRef } from '../../src/ops/gelu.ref.ts';
import { checkGradient, dot, projection } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('gelu', () => {
  it('reference backward matches central finite differences', () => {
    const x = Float64Array.from({ length: 40 }, (_, i) => -5 + i * 0.25 + 0.01);
    const w = projection(x.length, 3);
    expectAllPass([checkGradient('gelu dx', (v) => dot(geluRef(v), w), x, geluBackwardRef(x, w))]);
  });

  it('WGSL forward and backward match the float64 reference', async () => {
    expectAllPass(await checkGelu(await testGpu(), 'full'));
  });
});
