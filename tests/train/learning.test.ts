import { describe, expect, it } from 'vitest';
import { loadCorpus } from '../../src/data/brown-node.ts';
import { learningRate, TrainingRun } from '../../src/train/recipe.ts';
import { presetSpec, type RunSpec } from '../../src/train/run-spec.ts';
import { testGpu } from '../gpu-fixture.ts';

/**
 * SLOW (about 2 minutes on a 2-core CPU adapter): the engine learns English. A 4-stage GPT trained on the
 * Brown corpus for a CI-sized budget must predict held-out text well below the unigram baseline (the best a
 * model without context can do), in bits per byte.
 */
describe('learning on the Brown corpus (slow)', () => {
  it('validation loss falls well below the unigram baseline', async () => {
    const gpu = await testGpu();
    // The software-adapter preset (4 stages × 1 block, dModel 64, 200-step schedule) with the smallest
    // vocabulary (the cheapest head), stopped at step 100.
    const preset = presetSpec(true);
    const o: RunSpec = { ...preset, model: { ...preset.model, vocab: 1024 } };
    const steps = 100;
    const corpus = await loadCorpus(o.model.vocab);
    const run = TrainingRun.create(gpu, o, corpus, { evalBatches: 6 });
    const before = await run.evaluate();
    const losses: number[] = [];
    for (let step = 0; step < steps; step++) {
      run.adam.lr = learningRate(step, o);
      losses.push((await run.pipeline.trainStep(run.microBatches(step), o.batch, o.model.context)).loss);
    }
    const after = await run.evaluate();
    const { unigramNats, unigramBpb } = run.validation;
    console.log(
      `[learning] ${steps} steps, ${steps * run.tokensPerStep} tokens: validation ${before.loss.toFixed(3)} → ` +
        `${after.loss.toFixed(3)} nats/token, ${before.bpb.toFixed(3)} → ${after.bpb.toFixed(3)} bits/byte; ` +
        `unigram ${unigramNats.toFixed(3)} nats = ${unigramBpb.toFixed(3)} bits/byte`,
    );
    // At init the model is near-uniform over the vocabulary, well above the unigram entropy.
    expect(before.loss).toBeGreaterThan(Math.log(o.model.vocab) - 0.1);
    expect(after.loss).toBeLessThan(unigramNats - 0.4);
    expect(after.bpb).toBeLessThan(0.93 * unigramBpb);
    expect(losses.every(Number.isFinite)).toBe(true);
    run.destroy();
  });
});
