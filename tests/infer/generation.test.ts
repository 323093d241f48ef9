import { describe, expect, it } from 'vitest';
import { greedy } from '../../src/infer/sample.ts';
import { compare } from '../../src/ops/compare.ts';
import { testGpu } from '../gpu-fixture.ts';
import { buildStages, CFG, Chain, fullForwardLogits, row } from './fixtures.ts';

/**
 * The cached path and Stage.forward run the same float32 ops but in different orders (attention over a cache
 * in splits, matmuls of 1 row): logits of magnitude ~1 agree to ~1e-6; this leaves two orders of magnitude.
 */
const TOL = { atol: 1e-4, rtol: 1e-4 };
const V = CFG.vocab;

describe('greedy generation with KV caches', () => {
  for (const count of [2, 4]) {
    it(`through ${count} chained stages equals the argmax of the uncached full forward at every step`, async () => {
      const gpu = await testGpu();
      const stages = buildStages(gpu, count);
      // initialTokens 4: the caches grow (4 → 8 → 16 → 32) during the generation.
      const chain = new Chain(stages, { maxSessions: 4, initialTokens: 4 });
      const prompt = [3, 17, 17, 40, 2, 9, 31];
      const ids = [...prompt];
      // The prompt in two chunks (a later chunk attends over the first one's cache); all its logits checked.
      const first = await chain.prefill('s', prompt.slice(0, 4));
      const second = await chain.prefill('s', prompt.slice(4));
      let want = await fullForwardLogits(stages, ids);
      const chunked = new Float32Array([...first, ...second]);
      expect(compare('prefill logits', chunked, want, TOL).pass).toBe(true);
      let logits = row(second, 2, V);
      const margins: number[] = [];
      let maxErr = 0;
      for (let step = 0; step < 20; step++) {
        const ref = row(want, ids.length - 1, V);
        const c = compare(`step ${step} logits`, logits, ref, TOL);
        maxErr = Math.max(maxErr, c.maxAbsErr);
        expect(c.pass, `step ${step}: max err ${c.maxAbsErr}`).toBe(true);
        const token = greedy(logits);
        expect(token, `step ${step}`).toBe(greedy(ref));
        const sorted = [...ref].sort((a, b) => b - a);
        margins.push(sorted[0] - sorted[1]);
        ids.push(token);
        if (ids.length === CFG.context) break;
        logits = await chain.decode('s', [token]);
        expect(logits.length).toBe(V);
        want = await fullForwardLogits(stages, ids);
      }
      // The check has teeth: the generation is not one repeated token, and the top two logits are far apart
      // compared with the tolerance, so a wrong cache would change the tokens.
      expect(new Set(ids.slice(prompt.length)).size).toBeGreaterThan(2);
      expect(Math.min(...margins)).toBeGreaterThan(10 * TOL.atol);
      console.log(
        `${count} stages: ${ids.length - prompt.length} tokens, max |logit err| ${maxErr.toExponential(2)}, ` +
          `smallest top-2 margin ${Math.min(...margins).toFixed(4)}`,
      );
      const last = chain.stages.at(-1)!.session('s')!;
      expect(last.length).toBe(ids.length);
      chain.destroy();
      for (const s of stages) s.destroy();
    });
  }

  it('keeps sessions apart: interleaved generations each match their own full forward', async () => {
    const gpu = await testGpu();
    const stages = buildStages(gpu, 4);
    const chain = new Chain(stages, { maxSessions: 2 });
    const seqs: Record<string, number[]> = { a: [1, 2, 3], b: [44, 7, 30, 30, 5] };
    const next: Record<string, number> = {};
    for (const [s, ids] of Object.entries(seqs)) next[s] = greedy(row(await chain.prefill(s, ids), ids.length - 1, V));
    for (let step = 0; step < 4; step++) {
      for (const [s, ids] of Object.entries(seqs)) {
        ids.push(next[s]);
        const logits = await chain.decode(s, [next[s]]);
        const want = row(await fullForwardLogits(stages, ids), ids.length - 1, V);
        expect(compare(`${s} step ${step}`, logits, want, TOL).pass).toBe(true);
        next[s] = greedy(logits);
        expect(next[s]).toBe(greedy(want));
      }
    }
    chain.destroy();
    for (const s of stages) s.destroy();
  });
});
