import { describe, expect, it } from 'vitest';
import { accountSteps, checkReceipts, checkStepRecords, recomputedLosses } from '../bench/chaos-checks.ts';
import type { SignedReceipt } from '../src/ledger/receipt.ts';

/** The chaos run's checks on lines as the worker prints them: each must see the fault it is there for. */
const inc = (worker: string, n: number, texts: string[]) => ({
  worker,
  n,
  lines: texts.map((text, i) => ({ at: n * 1000 + i, text })),
});
const step = (k: number) => `[worker abc] step ${k}  loss 6.1  300 ms  sent 1 MB  received 1 MB`;

describe('chaos checks', () => {
  it('follows a stage through resumes and rollbacks, and catches a double apply, a skip and a reset', () => {
    const clean = accountSteps([
      inc('w1', 1, ['[worker abc] resume at step 0, round 1 (no peer holds this model: seeded initialisation)']),
      inc('w1', 1, [step(0), step(1), step(2), '[worker abc] rolled back stage 0 from step 3 to 2: …', step(2)]),
      inc('w2', 2, ['[worker abc] resuming as the others decided: step 1, round 2', step(1), step(2)]),
    ]);
    expect(clean).toMatchObject({ appliedTwice: [], skipped: [], resets: [], resumes: 2, rollbacks: 1 });
    const bad = accountSteps([
      inc('w1', 1, ['[worker abc] resume at step 0, round 1', step(0), step(1), step(1), step(3)]),
      inc('w2', 2, ['[worker abc] resume at step 4, round 2 (no peer holds this model: seeded initialisation)']),
    ]);
    expect(bad.appliedTwice).toHaveLength(1);
    expect(bad.skipped).toHaveLength(1);
    expect(bad.resets).toHaveLength(1);
  });

  it('reads recomputed losses, lost and doubled step records, and a loss jumping back', () => {
    const r = recomputedLosses([inc('w1', 1, ['[worker a] step 7 was already recorded (loss 5.5; recomputed 5.6)'])]);
    expect(r[0].step).toBe(7);
    expect(r[0].relative).toBeCloseTo(0.1 / 5.5, 9);
    const train = Array.from({ length: 60 }, (_, s) => ({ step: s, value: 7 - s * 0.05 }));
    expect(checkStepRecords(train)).toEqual({ last: 59, lost: [], twice: [], lossResets: [] });
    const holes = [...train.filter((m) => m.step !== 10), train[20], { step: 60, value: 6.9 }];
    expect(checkStepRecords(holes)).toMatchObject({ lost: [10], twice: [20], lossResets: [60] });
  });

  it('finds a receipt published twice and a unit with none', () => {
    const r = (step: number, stage: number, micro: number) =>
      ({ model: 'm', round: 1, stage, replica: 0, step, micro, kind: 'train', peerId: 'p' }) as SignedReceipt;
    const all = [0, 1].flatMap((stage) => [0, 1].map((micro) => r(0, stage, micro)));
    expect(checkReceipts(all, { throughStep: 0, stages: 2, microBatches: 2 })).toMatchObject({
      duplicates: [],
      missingUnits: [],
    });
    const c = checkReceipts([...all.slice(1), all[1]], { throughStep: 0, stages: 2, microBatches: 2 });
    expect(c.duplicates).toEqual(['m/1/0/0/0/1/train/p ×2']);
    expect(c.missingUnits).toEqual(['step 0 stage 0 micro 0']);
  });
});
