/**
 * `npm run bench:verify`: what verification by recomputation catches and what it costs, measured on the engine
 * (an in-process pipeline of 2 stages × 2 replicas: the same StageRunner, frames and audit code the swarm runs).
 *
 *  - Detection: a replica corrupts a share p of its own forward outputs (its private coin); siblings recompute a
 *    share f of forwards. Steps are grouped into epochs; an epoch catches the cheater when any audit of it
 *    mismatches (the same verdict rule settlement applies). The measured catch rate is set against the model
 *    1 − (1 − p·f)^n for n own units per epoch (each unit corrupted with probability p and audited with f).
 *  - Cost: the FLOPs of the audit receipts over the train receipts (exact, from the shapes), and the wall time per
 *    step with audits against a run without, measured in the same process (one shared device: the ratio, not the
 *    absolute time, is the figure).
 * Writes bench/results/verify.{json,md}. Options: `npm run bench:verify -- --help`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cli, positiveInt } from '../src/cli/args.ts';
import { adapterLabel } from '../src/gpu/adapter-info.ts';
import { Gpu } from '../src/gpu/index.ts';
import { receiptFor } from '../src/ledger/flops.ts';
import { judgeEpoch } from '../src/ledger/verdict.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { splitStages } from '../src/model/stages.ts';
import { Rng } from '../src/ops/rng.ts';
import { Pipeline, type MicroBatchData } from '../src/train/pipeline.ts';
import { ProgressBar } from '../src/train/progress.ts';
import { secretCoin, type WorkDone } from '../src/train/work.ts';
import { table } from '../src/cli/table.ts';
import { gitCommit } from './table.ts';

const root = resolve(import.meta.dirname, '..');
const args = cli({
  name: 'bench:verify',
  usage: 'npm run bench:verify -- [options]',
  description:
    'What verification by recomputation catches and what it costs, measured on the engine. ' +
    'Writes bench/results/verify.{json,md}.',
})
  .option('--steps <n>', 'steps per detection run', positiveInt, 200)
  .option('--epoch <n>', 'steps per epoch', positiveInt, 10)
  .parse()
  .opts<{ steps: number; epoch: number }>();
const STEPS = args.steps;
const EPOCH = args.epoch;
const cfg: ModelConfig = { vocab: 128, dModel: 32, heads: 2, layers: 2, context: 16, seed: 5 };
const adam = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
const B = 2;
const M = 8;
const REPLICAS = [2, 2];
const CHEATER = { stage: 1, replica: 0 };
const specs = splitStages(cfg, 2);

function batches(step: number): MicroBatchData[] {
  const rng = new Rng(step + 1);
  return Array.from({ length: M }, () => {
    const ids = Int32Array.from({ length: B * cfg.context }, () => rng.int(cfg.vocab));
    return { ids, targets: Int32Array.from(ids, (x) => (x + 1) % cfg.vocab) };
  });
}

interface Run {
  msPerStep: number;
  auditShare: number;
  epochs: number;
  caught: number;
  corrupted: number;
  unitsPerEpoch: number;
}

async function run(gpu: Gpu, label: string, f: number, p: number, steps: number): Promise<Run> {
  const work: Array<WorkDone & { stage: number; replica: number }> = [];
  const cheat = secretCoin(new Uint8Array([9, 9, 9]));
  let corrupted = 0;
  const pipe = Pipeline.create(gpu, {
    model: cfg,
    stages: 2,
    replicas: REPLICAS,
    adam,
    worker: (stage, replica) => ({
      audit: f > 0 ? { fraction: f, coin: secretCoin(new Uint8Array([stage, replica, 1])) } : undefined,
      onWork: (w) => work.push({ ...w, stage, replica }),
      corrupt:
        p > 0 && stage === CHEATER.stage && replica === CHEATER.replica
          ? (s, m) => (cheat(s, m, 0) < p ? (corrupted++, true) : false)
          : undefined,
    }),
  });
  const bar = new ProgressBar({ plainEvery: 50 });
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    await pipe.trainStep(batches(s), B, cfg.context);
    bar.update({ step: s + 1, total: steps, elapsed: (performance.now() - t0) / 1000 });
  }
  bar.done();
  const ms = (performance.now() - t0) / steps;
  pipe.destroy();
  const receipts = work.map((w) =>
    receiptFor(w, {
      model: 'bench',
      round: 0,
      spec: specs[w.stage],
      replica: w.replica,
      replicas: REPLICAS[w.stage],
      cfg,
      batch: B,
      seq: cfg.context,
      peerId: `s${w.stage}r${w.replica}`,
    }),
  );
  const flops = (kind: string) => receipts.filter((r) => r.kind === kind).reduce((a, r) => a + r.flops, 0);
  const epochs = Math.floor(steps / EPOCH);
  let caught = 0;
  for (let e = 0; e < epochs; e++) {
    const inEpoch = receipts.filter((r) => r.step >= e * EPOCH && r.step < (e + 1) * EPOCH);
    if (judgeEpoch(inEpoch, 2).verdicts.some((v) => v.peerId === `s${CHEATER.stage}r${CHEATER.replica}` && v.caught))
      caught++;
  }
  console.log(`[bench] ${label}: ${ms.toFixed(0)} ms/step, caught in ${caught}/${epochs} epochs`);
  // The cheater's own units per epoch: micro-batches m with m mod R = its replica.
  return {
    msPerStep: ms,
    auditShare: flops('audit') / flops('train'),
    epochs,
    caught,
    corrupted,
    unitsPerEpoch: EPOCH * (M / REPLICAS[CHEATER.stage]),
  };
}

const gpu = await Gpu.create();
const device = adapterLabel(gpu.adapter);
console.log(
  `[bench] device ${device}; 2 stages × 2 replicas, ${M} micro-batches of ${B}×${cfg.context} tokens, d_model ` +
    `${cfg.dModel}; epoch = ${EPOCH} steps`,
);
await run(gpu, 'warm-up', 0.1, 0, 3);
// Cost: the same 30 steps without and with audits, alternated three times so drift in machine load cancels.
const costSteps = 40;
const cost: Array<{ f: number; ms: number[]; share: number }> = [0, 0.1, 0.25].map((f) => ({ f, ms: [], share: 0 }));
for (let rep = 0; rep < 3; rep++) {
  for (const c of cost) {
    const r = await run(gpu, `cost f=${c.f} (${rep + 1}/3)`, c.f, 0, costSteps);
    c.ms.push(r.msPerStep);
    c.share = r.auditShare;
  }
}
const base = cost[0].ms.reduce((a, b) => a + b) / cost[0].ms.length;
const detection: Array<{ f: number; p: number; r: Run; model: number }> = [];
for (const [f, p] of [
  [0.1, 0.1],
  [0.1, 0.5],
  [0.25, 0.1],
] as const) {
  const r = await run(gpu, `detect f=${f} p=${p}`, f, p, STEPS);
  detection.push({ f, p, r, model: 1 - (1 - p * f) ** r.unitsPerEpoch });
}
gpu.destroy();

const commit = gitCommit(root) ?? '';
const md = [
  '## Verification by recomputation',
  '',
  `Generated by \`npm run bench:verify\` on ` +
    `${new Date().toISOString().slice(0, 10)}${commit ? ` at ${commit}` : ''}; device: ${device}. In-process ` +
    `pipeline, 2 stages × 2 replicas, ${M} micro-batches of ${B}×${cfg.context} tokens per step, d_model ` +
    `${cfg.dModel}; the cheater is replica ${CHEATER.replica} of stage ${CHEATER.stage} ` +
    `(${(EPOCH * M) / 2} own units per ${EPOCH}-step epoch).`,
  '',
  '### Cost',
  '',
  table(
    ['audit share f', 'audit FLOPs / training FLOPs', 'ms per step', 'vs no audits'],
    cost.map((c) => {
      const ms = c.ms.reduce((a, b) => a + b) / c.ms.length;
      return [
        String(c.f),
        `${(100 * c.share).toFixed(1)}%`,
        ms.toFixed(0),
        `${ms / base >= 1 ? '+' : ''}${(100 * (ms / base - 1)).toFixed(1)}%`,
      ];
    }),
  ),
  '',
  '### Detection within one epoch',
  '',
  table(
    ['audit share f', 'corrupted share p', 'epochs', 'caught (measured)', 'caught (model 1−(1−p·f)^n)'],
    detection.map((d) => [
      String(d.f),
      String(d.p),
      String(d.r.epochs),
      `${d.r.caught}/${d.r.epochs} = ${((100 * d.r.caught) / d.r.epochs).toFixed(0)}%`,
      `${(100 * d.model).toFixed(0)}%`,
    ]),
  ),
  '',
  "Audit FLOPs are forward-only (a third of a unit's training FLOPs), so f audits cost about f/3 of the " +
    'compute; a cheater corrupting a share p of its n units per epoch escapes an epoch with probability ' +
    '(1−p·f)^n, and every epoch it is caught voids all its receipts of that epoch.',
  '',
];
const text = md.join('\n');
console.log(`\n${text}`);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(
  join(root, 'bench/results/verify.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      commit,
      device,
      model: cfg,
      microBatches: M,
      batch: B,
      replicas: REPLICAS,
      epochSteps: EPOCH,
      cost: cost.map((c) => ({ fraction: c.f, auditFlopsShare: c.share, msPerStep: c.ms })),
      baselineMsPerStep: base,
      detection: detection.map((d) => ({
        fraction: d.f,
        corruptShare: d.p,
        epochs: d.r.epochs,
        caught: d.r.caught,
        corruptedUnits: d.r.corrupted,
        modelProbability: d.model,
      })),
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(join(root, 'bench/results/verify.md'), text + '\n');
