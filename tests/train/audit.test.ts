import { describe, expect, it } from 'vitest';
import { receiptFor } from '../../src/ledger/flops.ts';
import { judgeEpoch } from '../../src/ledger/verdict.ts';
import { splitStages } from '../../src/model/stages.ts';
import { Pipeline } from '../../src/train/pipeline.ts';
import { secretCoin, type WorkDone } from '../../src/train/work.ts';
import { testGpu } from '../gpu-fixture.ts';
import { adam, B, cfg, microBatches, T } from './fixtures.ts';

/** Verification by recomputation inside the engine: replicas recompute each other's forwards by hash. */
const STAGES = 3;
const REPLICAS = [2, 2, 2];
const M = 4;

async function run(opts: {
  fraction: number;
  cheater?: { stage: number; replica: number; corrupt: (step: number, micro: number) => boolean };
  steps?: number;
}) {
  const gpu = await testGpu();
  const work: Array<WorkDone & { stage: number; replica: number }> = [];
  const p = Pipeline.create(gpu, {
    model: cfg,
    stages: STAGES,
    replicas: REPLICAS,
    adam,
    worker: (stage, replica) => ({
      audit:
        opts.fraction > 0
          ? { fraction: opts.fraction, coin: secretCoin(new Uint8Array([stage, replica, 7])) }
          : undefined,
      onWork: (w) => work.push({ ...w, stage, replica }),
      corrupt:
        opts.cheater && opts.cheater.stage === stage && opts.cheater.replica === replica
          ? opts.cheater.corrupt
          : undefined,
    }),
  });
  const losses: number[] = [];
  for (let step = 0; step < (opts.steps ?? 2); step++)
    losses.push((await p.trainStep(microBatches(step, M), B, T)).loss);
  p.destroy();
  const specs = splitStages(cfg, STAGES);
  const receipts = work.map((w) =>
    receiptFor(w, {
      model: 'tiny',
      round: 0,
      spec: specs[w.stage],
      replica: w.replica,
      replicas: REPLICAS[w.stage],
      cfg,
      batch: B,
      seq: T,
      peerId: `peer-s${w.stage}r${w.replica}`,
    }),
  );
  return { losses, work, receipts };
}

describe('audits by recomputation (in-memory pipeline, 3 stages × 2 replicas)', () => {
  it('with every forward audited, honest replicas agree bit for bit and training is unchanged', async () => {
    const plain = await run({ fraction: 0 });
    const audited = await run({ fraction: 1 });
    expect(audited.losses).toEqual(plain.losses);
    const train = audited.work.filter((w) => w.kind === 'train');
    const audits = audited.work.filter((w) => w.kind === 'audit');
    expect(train.length).toBe(2 * STAGES * M);
    // Every micro-batch of every stage is recomputed once by the sibling replica.
    expect(audits.length).toBe(2 * STAGES * M);
    for (const a of audits) {
      const t = train.find((w) => w.stage === a.stage && w.step === a.step && w.micro === a.micro)!;
      expect(a.replica).not.toBe(t.replica);
      expect(a.inputHash).toBe(t.inputHash);
      expect(a.outputHash).toBe(t.outputHash);
    }
    // A receiver's input hash is its sender's output hash: the chain of receipts links up.
    for (const t of train.filter((w) => w.stage > 0)) {
      const up = train.find((w) => w.stage === t.stage - 1 && w.step === t.step && w.micro === t.micro)!;
      expect(t.inputHash).toBe(up.outputHash);
    }
    const j = judgeEpoch(audited.receipts, STAGES);
    expect(j.audits.every((a) => a.result === 'match')).toBe(true);
    expect(j.verdicts.filter((v) => v.caught)).toEqual([]);
    expect(j.verdicts.every((v) => v.credited === v.trainFlops + v.auditFlops && v.credited > 0)).toBe(true);
  });

  it('a replica that corrupts its outputs is caught by its sibling; the others keep their credits', async () => {
    const { receipts } = await run({ fraction: 1, cheater: { stage: 1, replica: 0, corrupt: (_s, m) => m === 2 } });
    const j = judgeEpoch(receipts, STAGES);
    const caught = j.verdicts.filter((v) => v.caught).map((v) => v.peerId);
    expect(caught).toEqual(['peer-s1r0']);
    const cheater = j.verdicts.find((v) => v.peerId === 'peer-s1r0')!;
    expect(cheater.credited).toBe(0);
    expect(cheater.failed).toBe(2); // micro-batch 2 of both steps
    expect(cheater.passed).toBe(2); // micro-batch 0 of both steps was honest
    expect(j.verdicts.filter((v) => v.peerId !== 'peer-s1r0').every((v) => v.credited > 0 && v.failed === 0)).toBe(
      true,
    );
  });

  it(
    'at a fraction below 1 only the coin-picked forwards are recomputed, and the audited peer is never ' + 'told',
    async () => {
      const { work } = await run({ fraction: 0.5, steps: 3 });
      const audits = work.filter((w) => w.kind === 'audit');
      expect(audits.length).toBeGreaterThan(0);
      expect(audits.length).toBeLessThan(3 * STAGES * M);
      // The same coins pick the same audits: the run is deterministic given the workers' secrets.
      const again = (await run({ fraction: 0.5, steps: 3 })).work.filter((w) => w.kind === 'audit');
      const picked = (ws: Array<WorkDone & { stage: number }>) =>
        ws.map((w) => `${w.stage}/${w.step}/${w.micro}`).sort();
      expect(picked(again)).toEqual(picked(audits));
    },
  );
});
