import { describe, expect, it } from 'vitest';
import {
  accountSteps,
  checkReceipts,
  checkStepRecords,
  recomputedLosses,
  recordingRounds,
  refusedCounted,
  refusedReceipts,
} from '../bench/chaos-checks.ts';
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

  it('follows a stage resumed from its own snapshot, and catches a step applied again past it', () => {
    const resumed = '[worker abc] resumed stage 0 of chaos from its snapshot at step 10 (561576 bytes)';
    const ok = accountSteps([inc('w1', 2, ['[worker abc] resume at step 10, round 4', resumed, step(10), step(11)])]);
    expect(ok).toMatchObject({ appliedTwice: [], skipped: [], resets: [], resumes: 1, snapshotLines: 1 });
    const twice = accountSteps([inc('w1', 2, [resumed, step(10), step(11), resumed.replace('10', '12'), step(11)])]);
    expect(twice.appliedTwice).toHaveLength(1);
    const paused = accountSteps([inc('w2', 1, ['[worker abc] PAUSED — waiting for stage 1: no snapshot of it'])]);
    expect(paused.pausedLines).toBe(1);
  });

  it('counts refused receipts, but not the duplicates a retry gets', () => {
    const refused = refusedReceipts([
      inc('w1', 1, [
        '[worker abc] receipt refused: train receipt of p for stage 0 step 16 unit 0: claims 1 replicas',
        '[worker abc] receipt refused: train receipt of p for stage 0 step 3 unit 1: duplicate: already stored (x)',
        '[worker abc] receipt refused: train receipt of p for stage 0 step 76 unit 1: step 76 is already settled',
      ]),
    ]);
    expect(refused).toHaveLength(2);
    expect(refused[1]).toMatch(/already settled/);
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

  it('holds each step to its recording round: an aborted attempt’s receipt does not cover a lost one', () => {
    const reporter = inc('w2', 1, [
      '[worker r] round 3: training from step 5 with 3 other worker(s)',
      '[worker r] step 5  loss 6.0  300 ms',
      '[worker r] round 4: training from step 5 with 2 other worker(s)',
      '[worker r] step 5 was already recorded (loss 6; recomputed 6)',
      '[worker r] step 5  loss 6.0  300 ms',
      '[worker r] step 6  loss 5.9  300 ms',
    ]);
    const rounds = recordingRounds([reporter]);
    expect([...rounds]).toEqual([
      [5, 3],
      [6, 4],
    ]);
    const r = (step: number, round: number) =>
      ({ model: 'm', round, stage: 0, replica: 0, step, micro: 0, kind: 'train', peerId: 'p' }) as SignedReceipt;
    const o = { throughStep: 6, stages: 1, microBatches: 1, rounds };
    const early = [0, 1, 2, 3, 4].map((k) => r(k, 1));
    expect(checkReceipts([...early, r(5, 3), r(6, 4)], o).missingUnits).toEqual([]);
    // Step 6's only receipt is of round 3 (an attempt rolled back): round 4's, the one that counted, is lost.
    expect(checkReceipts([...early, r(5, 3), r(6, 3)], o).missingUnits).toEqual(['step 6 stage 0 micro 0']);
    const line = (step: number) =>
      `w1#1: receipt refused: train receipt of p for stage 0 step ${step} unit 0: claims 1`;
    const recorded = new Set([5, 6]);
    // Refused for step 5 while round 3's receipt is in: an aborted attempt's; for step 6: the one that counted;
    // step 7 was never recorded; a refused batch names no unit and always counts.
    expect(
      refusedCounted(
        [line(5), line(6), line(7), 'w1#1: receipts: 3 refused (413): too large'],
        [r(5, 3)],
        rounds,
        recorded,
      ),
    ).toEqual([line(6), 'w1#1: receipts: 3 refused (413): too large']);
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
