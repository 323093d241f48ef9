/**
 * Inference latency under training load, against training throughput, on one device shared through GpuTurns.
 *
 *   npm run bench:turns -- [--steps=N] [--seconds=S] [--rounds=R]
 *
 * A 2-stage model trains in this process (Pipeline, both stages on this machine's WebGPU device) while one
 * requester generates tokens without pause through the same stages' current weights (StageInference with KV
 * caches): each token is one 'infer' turn per stage, each turn ending with its output read back, as a stage
 * holder answers a request. Scenarios: training alone, inference alone, both at inference share 0.1 / 0.5 / 0.9,
 * and share 0.5 under a 50 % duty cycle. Per scenario: training tokens/s, generated tokens/s, and the token
 * latency (request to logits on the host) p50 / p95 / max. The scenarios run in R interleaved rounds (one
 * pipeline, one GpuTurns whose settings change between scenarios) so that a machine shared with other work
 * slows all of them alike; figures pool the rounds.
 * Writes bench/results/turns.json and turns.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { cli, positiveInt, positiveNumber } from '../src/cli/args.ts';
import { BatchSampler } from '../src/data/batches.ts';
import { loadCorpus } from '../src/data/brown-node.ts';
import { adapterLabel } from '../src/gpu/adapter-info.ts';
import { GpuTurns } from '../src/gpu/gpu-turns.ts';
import { Gpu } from '../src/gpu/index.ts';
import { greedy } from '../src/infer/sample.ts';
import { StageInference } from '../src/infer/stage-infer.ts';
import { Pipeline } from '../src/train/pipeline.ts';
import { recipeAdam, recipeMicroBatches } from '../src/train/recipe.ts';
import { tokensPerStep as tokensPerStepOf } from '../src/train/run-derived.ts';
import { presetSpec, type RunSpec } from '../src/train/run-spec.ts';
import { median } from './cases.ts';
import { table } from '../src/cli/table.ts';
import { gitCommit } from './table.ts';

const root = resolve(import.meta.dirname, '..');
const args = cli({
  name: 'bench:turns',
  usage: 'npm run bench:turns -- [options]',
  description:
    'Inference latency under training load, against training throughput, on one device shared through GpuTurns. ' +
    'Writes bench/results/turns.json and turns.md.',
})
  .option('--steps <n>', 'training steps per scenario and round', positiveInt, 3)
  .option('--seconds <s>', 'seconds inference alone runs per round', positiveNumber, 2)
  .option('--rounds <r>', 'interleaved rounds of all the scenarios', positiveInt, 3)
  .parse()
  .opts<{ steps: number; seconds: number; rounds: number }>();
const STEPS = args.steps;
const SECONDS = args.seconds;
const ROUNDS = args.rounds;
const say = (s: string) => console.log(`[bench] ${s}`);

const gpu = await Gpu.create();
const device = adapterLabel(gpu.adapter);
const preset = presetSpec(gpu.adapter.isSoftware);
// Two of the preset's stages: the smallest vocabulary keeps the head cheap.
const blocks = preset.layout[0];
const recipe: RunSpec = {
  ...preset,
  model: { ...preset.model, vocab: 1024, layers: 2 * blocks },
  layout: [blocks, blocks],
};
const cfg = recipe.model;
const corpus = await loadCorpus(cfg.vocab);
const sampler = new BatchSampler(corpus.train, { seed: recipe.seed, batchSize: recipe.batch, seq: cfg.context });
const PROMPT = Array.from(corpus.val.subarray(0, 16));
say(
  `device ${device}; model d_model ${cfg.dModel}, ${cfg.layers} layers in 2 stages, context ${cfg.context}, ` +
    `vocab ${cfg.vocab}; ${recipe.microBatches} micro-batches of ${recipe.batch}×${cfg.context} per step`,
);

interface Scenario {
  name: string;
  train: boolean;
  infer: boolean;
  share: number;
  duty: number;
}

interface Row extends Scenario {
  trainTokensPerSecond?: number;
  stepMs?: number;
  generatedTokensPerSecond?: number;
  tokens: number;
  latencyMs?: { p50: number; p95: number; max: number };
  /** Mean wait of an inference turn for the device (queue, rests), and of a training turn. */
  inferWaitMs?: number;
  trainWaitMs?: number;
  /** Share of the device's turns that were inference. */
  inferTurnShare: number;
  /** Share of the wall time the device spent in turns, and resting under the duty cycle. */
  busyShare: number;
  restShare: number;
  /** Mean length of a training turn and of an inference turn. */
  trainTurnMs?: number;
  inferTurnMs?: number;
}

const scenarios: Scenario[] = [
  { name: 'training alone', train: true, infer: false, share: 0.5, duty: 1 },
  { name: 'inference alone', train: false, infer: true, share: 0.5, duty: 1 },
  { name: 'both, share 0.1', train: true, infer: true, share: 0.1, duty: 1 },
  { name: 'both, share 0.5', train: true, infer: true, share: 0.5, duty: 1 },
  { name: 'both, share 0.9', train: true, infer: true, share: 0.9, duty: 1 },
  { name: 'both, share 0.5, duty cycle 0.5', train: true, infer: true, share: 0.5, duty: 0.5 },
];

const percentile = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

let stepIndex = 0;
let sessionCount = 0;
const turns = new GpuTurns();
const pipeline = Pipeline.create(gpu, {
  model: cfg,
  stages: 2,
  adam: recipeAdam(recipe),
  clipNorm: recipe.optim.clip,
  turns,
});
const engines = pipeline.stages.map((st) => new StageInference(st, { maxSessions: 2 }));

/** One token through both stages: one turn per stage, each ending with its output on the host. */
async function token(session: string, input: number[], open: boolean): Promise<number> {
  let x: Float32Array | number[] = input;
  for (const e of engines) {
    const x0 = x;
    x = await turns.run('infer', async () => {
      const r = open ? e.prefill(session, x0, { logits: 'last' }) : e.decode(session, x0);
      const out = (r.output ?? r.logits)!;
      const host = (await gpu.read(out)) as Float32Array;
      gpu.release(out);
      return host;
    });
  }
  return greedy((x as Float32Array).subarray(x.length - cfg.vocab));
}

/** What one run of a scenario measured. */
interface Sample {
  trainMs: number;
  steps: number;
  wallMs: number;
  latencies: number[];
  inferTurns: number;
  trainTurns: number;
  inferWaitMs: number;
  trainWaitMs: number;
  /** Device time in turns (both classes; and each) and in duty-cycle rests. */
  busyMs: number;
  trainBusyMs: number;
  inferBusyMs: number;
  restMs: number;
}

async function runScenario(sc: Scenario): Promise<Sample> {
  turns.inferenceShare = sc.share;
  turns.dutyCycle = sc.duty;
  const latencies: number[] = [];
  let running = true;
  const requester = async () => {
    while (running) {
      const session = `s${sessionCount++}`;
      let input = PROMPT;
      for (let pos = PROMPT.length; pos < cfg.context && running; pos++) {
        const t0 = performance.now();
        const next = await token(session, input, pos === PROMPT.length);
        // decode tokens only (the prefill is a longer turn)
        if (pos > PROMPT.length) latencies.push(performance.now() - t0);
        input = [next];
      }
      for (const e of engines) e.end(session);
    }
  };
  const before = structuredClone(turns.stats);
  const t0 = performance.now();
  const generating = sc.infer ? requester() : Promise.resolve();
  let trainMs = 0;
  if (sc.train) {
    for (let k = 0; k < STEPS; k++)
      trainMs += (await pipeline.trainStep(recipeMicroBatches(sampler, recipe, stepIndex++), recipe.batch, cfg.context))
        .ms;
  } else {
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
  }
  running = false;
  await generating;
  const s = turns.stats;
  return {
    trainMs,
    steps: sc.train ? STEPS : 0,
    wallMs: performance.now() - t0,
    latencies,
    inferTurns: s.infer.turns - before.infer.turns,
    trainTurns: s.train.turns - before.train.turns,
    inferWaitMs: s.infer.waitMs - before.infer.waitMs,
    trainWaitMs: s.train.waitMs - before.train.waitMs,
    busyMs: s.infer.busyMs + s.train.busyMs - before.infer.busyMs - before.train.busyMs,
    restMs: s.restMs - before.restMs,
    trainBusyMs: s.train.busyMs - before.train.busyMs,
    inferBusyMs: s.infer.busyMs - before.infer.busyMs,
  };
}

// Warm-up: kernels compiled, buffers pooled.
await pipeline.trainStep(recipeMicroBatches(sampler, recipe, stepIndex++), recipe.batch, cfg.context);
await token('warm', PROMPT, true);
for (const e of engines) e.end('warm');

const samples = scenarios.map(() => [] as Sample[]);
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, sc] of scenarios.entries()) {
    const x = await runScenario(sc);
    samples[i].push(x);
    say(
      `round ${round + 1}/${ROUNDS} ${sc.name}: ` +
        `${x.steps ? `${(x.trainMs / x.steps).toFixed(0)} ms/step` : ''} ` +
        `${x.latencies.length ? `${x.latencies.length} tokens, p50 ${median(x.latencies).toFixed(1)} ms` : ''}`,
    );
  }
}
for (const e of engines) e.destroy();
pipeline.destroy();
gpu.destroy();

const tokensPerStep = tokensPerStepOf(recipe);
const rows: Row[] = scenarios.map((sc, i) => {
  const xs = samples[i];
  const sum = (f: (x: Sample) => number) => xs.reduce((a, x) => a + f(x), 0);
  const latencies = xs.flatMap((x) => x.latencies);
  const inferTurns = sum((x) => x.inferTurns);
  const trainTurns = sum((x) => x.trainTurns);
  return {
    ...sc,
    tokens: latencies.length,
    inferTurnShare: inferTurns / Math.max(1, inferTurns + trainTurns),
    trainTokensPerSecond: sc.train ? (sum((x) => x.steps) * tokensPerStep) / (sum((x) => x.trainMs) / 1000) : undefined,
    stepMs: sc.train ? sum((x) => x.trainMs) / sum((x) => x.steps) : undefined,
    generatedTokensPerSecond: sc.infer ? latencies.length / (sum((x) => x.wallMs) / 1000) : undefined,
    latencyMs: latencies.length
      ? { p50: median(latencies), p95: percentile(latencies, 0.95), max: Math.max(...latencies) }
      : undefined,
    inferWaitMs: inferTurns ? sum((x) => x.inferWaitMs) / inferTurns : undefined,
    trainWaitMs: trainTurns ? sum((x) => x.trainWaitMs) / trainTurns : undefined,
    busyShare: sum((x) => x.busyMs) / sum((x) => x.wallMs),
    restShare: sum((x) => x.restMs) / sum((x) => x.wallMs),
    trainTurnMs: trainTurns ? sum((x) => x.trainBusyMs) / trainTurns : undefined,
    inferTurnMs: inferTurns ? sum((x) => x.inferBusyMs) / inferTurns : undefined,
  };
});

const f = (x: number | undefined, d = 0) => (x === undefined ? '–' : x.toFixed(d));
const alone = rows[0].trainTokensPerSecond!;
const commit = gitCommit(root) ?? '';
const md = [
  '## One device, training and inference (GpuTurns)',
  '',
  `Generated by \`npm run bench:turns\` on ` +
    `${new Date().toISOString().slice(0, 10)}${commit ? ` at ${commit}` : ''}; device: ${device}.`,
  `Model d_model ${cfg.dModel}, ${cfg.layers} layers in 2 stages, context ${cfg.context}, vocab ${cfg.vocab}. ` +
    `Training: ${STEPS} steps of ${recipe.microBatches}×${recipe.batch}×${cfg.context} tokens per scenario and ` +
    `round, ${ROUNDS} interleaved rounds pooled.`,
  `Inference: one requester generating greedily without pause (16-token prompt, then one token at a time to ` +
    `the context, then a new session); a token is one turn per stage. Latency: decode tokens, request to ` +
    `logits on the host. Inference alone runs ${SECONDS} s per round.`,
  '',
  table(
    [
      'scenario',
      'training tokens/s',
      'vs alone',
      'step ms',
      'generated tokens/s',
      'token p50 ms',
      'p95 ms',
      'max ms',
      'inference share of turns',
      'training turn ms',
      'inference turn ms',
      'device busy',
      'resting',
    ],
    rows.map((r) => [
      r.name,
      f(r.trainTokensPerSecond),
      r.trainTokensPerSecond ? `${(r.trainTokensPerSecond / alone).toFixed(2)}×` : '–',
      f(r.stepMs),
      f(r.generatedTokensPerSecond, 1),
      f(r.latencyMs?.p50, 1),
      f(r.latencyMs?.p95, 1),
      f(r.latencyMs?.max, 1),
      r.train && r.infer ? r.inferTurnShare.toFixed(2) : '–',
      f(r.trainTurnMs, 1),
      f(r.inferTurnMs, 1),
      `${(100 * r.busyShare).toFixed(0)} %`,
      `${(100 * r.restShare).toFixed(0)} %`,
    ]),
    ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  ),
  '',
];
const text = md.join('\n');
console.log(`\n${text}`);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(
  join(root, 'bench/results/turns.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      commit,
      device,
      model: cfg,
      recipe,
      steps: STEPS,
      rounds: ROUNDS,
      seconds: SECONDS,
      rows,
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(join(root, 'bench/results/turns.md'), text + '\n');
