import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.ts';
import { compare, describe as describeComparison } from '../../src/ops/compare.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { parseSafetensors } from '../../src/model/safetensors.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages } from '../../src/model/stages.ts';
import { testGpu } from '../gpu-fixture.ts';

/**
 * The model must reproduce tests/fixtures/golden/tiny-gpt (an independent float64 implementation): loss, logits,
 * every parameter gradient and the losses of three AdamW steps, however the layers are split into stages.
 */
const dir = new URL('../fixtures/golden/', import.meta.url);
const golden = JSON.parse(readFileSync(new URL('tiny-gpt.json', dir), 'utf8'));
const cfg: ModelConfig = {
  vocab: golden.config.vocab,
  dModel: golden.config.d_model,
  heads: golden.config.heads,
  layers: golden.config.layers,
  context: golden.config.context,
};
const B = golden.config.batch as number;
const T = cfg.context;
const ids = Int32Array.from((golden.inputs as number[][]).flat());
const targets = Int32Array.from((golden.targets as number[][]).flat());
const gradTol = { atol: 1e-4, rtol: 1e-3 }; // golden suggested_tolerances.float32_grad
const lossTol = golden.suggested_tolerances.float32_loss_abs as number;
const adam = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };

async function load(name: string) {
  return (await parseSafetensors(new Uint8Array(readFileSync(new URL(name, dir))))).tensors;
}

function pipeline(gpu: Gpu, weights: Map<string, Float32Array>, stages: number): Stage[] {
  return splitStages(cfg, stages).map((spec) => Stage.create(gpu, cfg, spec, weights));
}

/** forward through every stage, then backward; returns the loss and the last stage's logits. */
async function step(gpu: Gpu, stages: Stage[], id: number): Promise<{ loss: number; logits: Float32Array }> {
  let act;
  let out: ReturnType<Stage['forward']> = {};
  for (const s of stages) {
    out = s.forward({ id, batch: B, seq: T, ids, targets, input: act });
    act = out.output;
  }
  const loss = (await gpu.read(out.loss!))[0];
  const logits = (await gpu.read(out.logits!)) as Float32Array;
  gpu.release(out.loss, out.logits);
  let grad;
  for (let i = stages.length - 1; i >= 0; i--) grad = stages[i].backward(id, grad);
  expect(grad).toBeUndefined();
  return { loss, logits };
}

describe('golden tiny GPT', async () => {
  const weights = new Map([...(await load('tiny-gpt.safetensors'))].map(([k, v]) => [k, v.data as Float32Array]));
  const grads = await load('tiny-gpt.grads.safetensors');

  for (const n of [1, 2, 3]) {
    it(`${n} stage(s): loss, logits and every gradient match the float64 reference`, async () => {
      const gpu = await testGpu();
      const stages = pipeline(gpu, weights, n);
      const { loss, logits } = await step(gpu, stages, 0);
      expect(Math.abs(loss - golden.loss)).toBeLessThan(lossTol);
      const V = cfg.vocab;
      const first = (golden.logits_first_position as number[][]).flat();
      const last = (golden.logits_last_position as number[][]).flat();
      const gotFirst = Array.from({ length: B }, (_, b) => [...logits.subarray(b * T * V, b * T * V + V)]).flat();
      const gotLast = Array.from({ length: B }, (_, b) => [
        ...logits.subarray((b * T + T - 1) * V, (b * T + T) * V),
      ]).flat();
      const checks = [
        compare('logits[first]', gotFirst, first, gradTol),
        compare('logits[last]', gotLast, last, gradTol),
      ];
      const seen = new Set<string>();
      for (const s of stages) {
        for (const [name, g] of await s.readGrads()) {
          seen.add(name);
          checks.push(compare(`grad ${name} (stage ${s.spec.index})`, g, grads.get(name)!.data, gradTol));
        }
      }
      expect([...seen].sort()).toEqual([...grads.keys()].sort());
      expect(
        checks
          .filter((c) => !c.pass)
          .map(describeComparison)
          .join('\n'),
      ).toBe('');
      for (const s of stages) s.destroy();
    });
  }

  it('3 AdamW steps reproduce the golden losses (2 stages)', async () => {
    const gpu = await testGpu();
    const stages = pipeline(gpu, weights, 2);
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) {
      losses.push((await step(gpu, stages, i)).loss);
      for (const s of stages) await s.applyStep(adam);
    }
    losses.push((await step(gpu, stages, 3)).loss);
    const want = golden.adamw_losses as number[];
    losses.forEach((l, i) =>
      expect(Math.abs(l - want[i]), `loss before step ${i + 1}: ${l} vs ${want[i]}`).toBeLessThan(lossTol),
    );
    for (const s of stages) s.destroy();
  });
});
