import { describe, expect, it } from 'vitest';
import { learningRate } from '../../src/train/recipe.ts';
import { stageCosts, stageSpecs, subspaceK, tokensPerStep } from '../../src/train/run-derived.ts';
import { presetSpec, RunSpecError, validateRunSpec, type RunSpec } from '../../src/train/run-spec.ts';

const base = (): RunSpec => presetSpec(true);

describe('RunSpec', () => {
  it('presets hold the device defaults, field for field', () => {
    expect(presetSpec(true)).toEqual({
      model: { vocab: 4096, dModel: 64, heads: 4, layers: 4, context: 64, seed: 1 },
      layout: [1, 1, 1, 1],
      codec: { name: 'none', tail: 0 },
      microBatches: 4,
      batch: 4,
      optim: { lr: 3e-3, warmup: 20, steps: 200, weightDecay: 0.1, beta2: 0.95, clip: 1 },
      data: { corpus: 'brown' },
      seed: 1,
      pricePer1kTokens: 0.01,
      snapshotEvery: 10,
    });
    expect(subspaceK(presetSpec(true))).toBe(16);
    const gpu = presetSpec(false);
    expect(gpu).toMatchObject({ layout: [2, 2, 2, 2], batch: 8, microBatches: 8 });
    expect(gpu.model).toMatchObject({ dModel: 256, context: 128, vocab: 2048 });
    expect(gpu.optim).toMatchObject({ steps: 2000, lr: 1e-3, warmup: 100 });
    expect(subspaceK(gpu)).toBe(64);
  });

  it('survives JSON and validates to itself; presetSpec hands out copies', () => {
    const s = base();
    expect(validateRunSpec(JSON.parse(JSON.stringify(s)))).toEqual(s);
    s.optim.lr = 1;
    expect(presetSpec(true).optim.lr).toBe(3e-3);
  });

  it('refuses a bad field with a message naming it', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ ...base(), optim: { ...base().optim, lr: -1 } }, /spec\.optim\.lr must be a finite number/],
      [{ ...base(), colour: 'red' }, /spec: unknown field colour/],
      [{ ...base(), codec: { name: 'gzip', tail: 0 } }, /spec\.codec\.name must be one of none, int8/],
      [{ ...base(), codec: { name: 'subspace', k: 65, tail: 0 } }, /spec\.codec\.k must be an integer in \[1, 64\]/],
      [{ ...base(), layout: [2, 0, 2] }, /stage 1 has no layers and no head/],
      [{ ...base(), layout: [1, 1] }, /does not split 4 layers into 2 stages/],
      [{ ...base(), model: { ...base().model, heads: 3 } }, /not divisible by heads/],
      [{ ...base(), data: { corpus: 'web' } }, /spec\.data\.corpus must be one of brown/],
      [{ ...base(), batch: undefined }, /spec\.batch must be an integer/],
    ];
    for (const [v, message] of bad) expect(() => validateRunSpec(v, { path: 'spec' })).toThrow(message);
    expect(() => validateRunSpec({ ...base(), seed: 'x' })).toThrow(RunSpecError);
  });

  it('derives stages, costs, k and tokens per step in one place', () => {
    const s: RunSpec = { ...base(), model: { ...base().model, layers: 5 }, layout: [2, 1, 0, 2] };
    expect(stageSpecs(s).map((x) => [x.firstLayer, x.endLayer])).toEqual([
      [0, 2],
      [2, 3],
      [3, 3],
      [3, 5],
    ]);
    const costs = stageCosts(s).map((x) => x.flopsPerToken);
    expect(costs[0]).toBeGreaterThan(costs[1]);
    expect(subspaceK(s)).toBe(16);
    expect(subspaceK({ ...s, codec: { name: 'subspace', k: 8, tail: 0 } })).toBe(8);
    expect(tokensPerStep(s)).toBe(4 * 4 * 64);
  });

  it('the schedule warms up linearly, then decays by a cosine to 10% of the peak at the last step', () => {
    const s = base();
    const { lr, warmup, steps } = s.optim;
    expect(learningRate(0, s)).toBeCloseTo(lr / warmup, 12);
    expect(learningRate(warmup - 1, s)).toBeCloseTo(lr, 12);
    expect(learningRate(warmup, s)).toBeCloseTo(lr, 12);
    expect(learningRate((warmup + steps - 1) / 2, s)).toBeCloseTo(lr * 0.55, 12);
    expect(learningRate(steps - 1, s)).toBeCloseTo(lr * 0.1, 12);
    expect(learningRate(steps + 50, s)).toBeCloseTo(lr * 0.1, 12);
  });
});
