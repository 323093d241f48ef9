import { describe, expect, it } from 'vitest';
import { defaultRecipe, learningRate, specFromRecipe } from '../../src/train/recipe.ts';
import { stageCosts, stageSpecs, subspaceK, tokensPerStep } from '../../src/train/run-derived.ts';
import { presetSpec, RunSpecError, validateRunSpec, type RunSpec } from '../../src/train/run-spec.ts';

const base = (): RunSpec => presetSpec(true);

describe('RunSpec', () => {
  it('presets are the device defaults the flat recipe had, field for field', () => {
    expect(defaultRecipe(true)).toEqual({
      stages: 4,
      blocks: 1,
      dModel: 64,
      heads: 4,
      context: 64,
      vocab: 4096,
      batch: 4,
      micro: 4,
      seed: 1,
      steps: 200,
      lr: 3e-3,
      warmup: 20,
      weightDecay: 0.1,
      beta2: 0.95,
      clip: 1,
      codec: 'none',
      k: 16,
      tail: 0,
      evalBatches: 8,
    });
    expect(defaultRecipe(false)).toMatchObject({ stages: 4, blocks: 2, dModel: 256, context: 128, vocab: 2048 });
    expect(defaultRecipe(false)).toMatchObject({ batch: 8, micro: 8, steps: 2000, lr: 1e-3, warmup: 100, k: 64 });
  });

  it('a flat recipe converts to the same spec as its preset (but for price and the explicit k)', () => {
    for (const software of [true, false]) {
      const s = specFromRecipe(defaultRecipe(software));
      const p = presetSpec(software);
      expect({ ...s, pricePer1kTokens: p.pricePer1kTokens, codec: { ...s.codec, k: undefined } }).toEqual({
        ...p,
        codec: { ...p.codec, k: undefined },
      });
    }
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

  it('the schedule reads the spec as it read the flat recipe', () => {
    const s = base();
    const o = defaultRecipe(true);
    for (const step of [0, 5, 19, 20, 100, 199, 250]) expect(learningRate(step, s)).toBe(learningRate(step, o));
  });
});
