import { expect } from 'vitest';
import type { ModelConfig } from '../../src/model/config.ts';
import { compare, describe as describeComparison } from '../../src/ops/compare.ts';
import { Rng } from '../../src/ops/rng.ts';
import type { MicroBatchData, Pipeline } from '../../src/train/pipeline.ts';

/** A small model and a learnable token stream shared by the pipeline engine's tests. */
export const cfg: ModelConfig = { vocab: 61, dModel: 32, heads: 2, layers: 4, context: 16, seed: 3 };
export const adam = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
export const B = 2;
export const T = 16;

export function microBatches(step: number, M: number): MicroBatchData[] {
  const rng = new Rng(1000 + step);
  return Array.from({ length: M }, () => {
    // A learnable stream: each token is the previous + 1 (mod vocab), with a random start per row.
    const ids = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = rng.int(cfg.vocab);
      for (let t = 0; t < T; t++) {
        ids[b * T + t] = (start + t) % cfg.vocab;
        targets[b * T + t] = (start + t + 1) % cfg.vocab;
      }
    }
    return { ids, targets };
  });
}

export async function params(p: Pipeline): Promise<Map<string, Float32Array>> {
  const all = new Map<string, Float32Array>();
  for (const s of p.stages) for (const [k, v] of await s.readParams()) all.set(k, v);
  return all;
}

export function expectSameParams(
  a: Map<string, Float32Array>,
  b: Map<string, Float32Array>,
  tol = { atol: 1e-5, rtol: 1e-4 },
) {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  const bad = [...a].map(([k, v]) => compare(k, v, b.get(k)!, tol)).filter((c) => !c.pass);
  expect(bad.map(describeComparison).join('\n')).toBe('');
}
