import { describe, expect, it } from 'vitest';
import {
  stageForwardFlops,
  stageIncrementalFlops,
  stageTrainingFlops,
  trainingFlopsPerToken,
} from '../../src/model/flops.ts';
import { splitStages } from '../../src/model/stages.ts';

describe('FLOP counts', () => {
  const cfg = { vocab: 10, dModel: 8, heads: 2, layers: 3, context: 4 };

  it('count every matmul of a block and the head, and causal attention, per sequence', () => {
    // By hand for one block, T = 4, C = 8, MLP 32: qkv 4·8·24, proj 4·8·8, fc 4·8·32, proj 4·32·8 multiply-adds;
    // attention: (1 + 2 + 3 + 4) key/value pairs × 8 dims × 2 (scores and mixing) multiply-adds.
    const blockMacs = 4 * 8 * 24 + 4 * 8 * 8 + 4 * 8 * 32 + 4 * 32 * 8 + 10 * 8 * 2;
    const headMacs = 4 * 8 * 10;
    const forward = 2 * (3 * blockMacs + headMacs);
    expect(trainingFlopsPerToken(cfg) * 4).toBe(3 * forward);
  });

  it('stages add up to the whole model however it is split', () => {
    const whole = trainingFlopsPerToken(cfg) * 2 * 4;
    for (const n of [1, 2, 3]) {
      const parts = splitStages(cfg, n).map((s) => stageTrainingFlops(cfg, s, 2, 4));
      expect(parts.reduce((a, b) => a + b, 0)).toBe(whole);
    }
  });

  it(
    'incremental (KV-cached) forwards: a prompt equals the full forward, and prompt + decode steps add up ' + 'to it',
    () => {
      for (const spec of splitStages(cfg, 2)) {
        expect(stageIncrementalFlops(cfg, spec, 4, 0, 4)).toBe(stageForwardFlops(cfg, spec, 4));
        // Prefill of 2 then two single-token decodes covers the same keys as one pass over 4; the head only
        // projects the rows that were asked for (here every row, as the full pass does).
        const pieces =
          stageIncrementalFlops(cfg, spec, 2, 0, 2) +
          stageIncrementalFlops(cfg, spec, 1, 2, 1) +
          stageIncrementalFlops(cfg, spec, 1, 3, 1);
        expect(pieces).toBe(stageForwardFlops(cfg, spec, 4));
      }
    },
  );
});
