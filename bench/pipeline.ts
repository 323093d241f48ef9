/**
 * `npm run bench:pipeline`: the pipeline engine on the Brown corpus, on this machine's WebGPU device.
 *
 *   A. Throughput: the same model on 1 stage and on 4 stages over shaped links (80 Mb/s, 50 ms), with and
 *      without compression, synchronous and asynchronous. In one process the stages share one device, so
 *      the measured tokens/s is that of one device doing everything; the engine also traces every op, and
 *      replaying those measured op times on 4 independent devices (src/train/simulate.ts) gives the
 *      tokens/s and the bubble a swarm of 4 such peers would see, against the 1F1B ideal (N−1)/(M+N−1).
 *   B. Compression: per codec, bytes per token across a boundary and validation loss after the same steps.
 *   C. Asynchronous training: validation loss at equal tokens, sync vs async (no correction, Nesterov).
 *
 * Writes bench/results/pipeline.json, pipeline.md and pipeline-loss.svg.
 * Options: --steps=N (training steps for B and C, default 100; other than 100 writes *.tmp files),
 * --only=A,B,C (runs those parts and keeps the others' last results from pipeline.json).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { Option } from 'commander';
import { cli, listOf, positiveInt } from '../src/cli/args.ts';
import type { CodecName } from '../src/compress/index.ts';
import { loadCorpus } from '../src/data/brown-node.ts';
import { adapterLabel } from '../src/gpu/adapter-info.ts';
import { Gpu } from '../src/gpu/index.ts';
import { lineChartSvg } from '../src/train/chart.ts';
import type { LinkShape } from '../src/train/memory-transport.ts';
import type { OpSpan } from '../src/train/pipeline.ts';
import { formatDuration } from '../src/train/progress.ts';
import { TrainingRun, unigram, type Corpus } from '../src/train/recipe.ts';
import { stageCount, subspaceK } from '../src/train/run-derived.ts';
import { presetSpec, type RunSpec } from '../src/train/run-spec.ts';
import { idealBubble } from '../src/train/schedule.ts';
import { replaySchedule } from '../src/train/simulate.ts';
import { median } from './cases.ts';
import { table } from '../src/cli/table.ts';
import { gitCommit } from './table.ts';
import { trainAndEvaluate, withStages, withSteps, type TrainRow } from './train-run.ts';

const root = resolve(import.meta.dirname, '..');
const args = cli({
  name: 'bench:pipeline',
  usage: 'npm run bench:pipeline -- [options]',
  description:
    'The pipeline engine on the Brown corpus: A throughput, B compression, C asynchronous training. ' +
    'Writes bench/results/pipeline.json, pipeline.md and pipeline-loss.svg.',
})
  .option('--steps <n>', 'training steps for B and C (other than 100 writes *.tmp files)', positiveInt, 100)
  .addOption(
    new Option('--only <parts>', "run these parts and keep the others' last results from pipeline.json")
      .argParser(listOf(['A', 'B', 'C'] as const))
      .default(['A', 'B', 'C'], 'A,B,C'),
  )
  .parse()
  .opts<{ steps: number; only: string[] }>();
const trainSteps = args.steps;
const parts = new Set(args.only);
const LINK: LinkShape = { bitsPerSecond: 80e6, latencyMs: 50 };
const t0 = performance.now();
const say = (s: string) => console.log(`[bench] ${s}`);

const gpu = await Gpu.create();
const software = gpu.adapter.isSoftware;
const device = adapterLabel(gpu.adapter);
// The smallest shipped vocabulary keeps the head from dominating the last stage's cost (and the runtime).
const preset = presetSpec(software);
const base: RunSpec = withSteps({ ...preset, model: { ...preset.model, vocab: 1024 } }, trainSteps);
const { model } = base;
say(
  `device: ${device}; model ${model.layers} blocks, dModel ${model.dModel}, context ` +
    `${model.context}, vocab ${model.vocab}, ${base.batch} sequences per micro-batch`,
);
const corpus: Corpus = await loadCorpus(model.vocab);

// ---- A. throughput ----
interface ThroughputRow {
  name: string;
  stages: number;
  codec: CodecName;
  staleness: number;
  microBatches: number;
  bytesPerToken: number;
  measuredTokensPerSecond: number;
  replayTokensPerSecond: number;
  replayBubble: number;
  idealBubble: number;
  replayUtilization: number[];
  costsMs: { F: number[]; B: number[]; U: number[] };
}

/**
 * Compute time of each stage's forward, backward and update, each measured alone: one micro-batch per step
 * makes the stages take turns, so no op's span includes another stage's work queued on the shared device.
 * (The updates of a synchronous step still run side by side after the norm exchange: an overestimate.)
 */
async function profile(o: RunSpec): Promise<ThroughputRow['costsMs']> {
  const run = TrainingRun.create(gpu, { ...o, microBatches: 1 }, corpus, { timeoutMs: 3_600_000 });
  const seq = o.model.context;
  await run.pipeline.trainAsync([run.microBatches(0)], o.batch, seq, { staleness: 0, correction: 'none' });
  const trace: OpSpan[] = [];
  await run.pipeline.trainAsync(
    [1, 2, 3, 4, 5, 6, 7, 8, 9].map((k) => run.microBatches(k)),
    o.batch,
    seq,
    { staleness: 0, correction: 'none', trace },
  );
  run.destroy();
  const costs = { F: [] as number[], B: [] as number[], U: [] as number[] };
  for (let s = 0; s < stageCount(o); s++) {
    for (const op of ['F', 'B', 'U'] as const)
      costs[op].push(median(trace.filter((t) => t.stage === s && t.op === op).map((t) => t.endMs - t.startMs)));
  }
  return costs;
}

async function throughput(): Promise<ThroughputRow[]> {
  const M = 8;
  const steps = 4;
  const configs: Array<{ name: string; stages: number; codec: CodecName; staleness: number; link?: LinkShape }> = [
    { name: '1 stage (baseline)', stages: 1, codec: 'none', staleness: 0 },
    { name: '4 stages, none, sync, unshaped links', stages: 4, codec: 'none', staleness: 0 },
    { name: '4 stages, none, sync', stages: 4, codec: 'none', staleness: 0, link: LINK },
    { name: '4 stages, subspace+int8, sync', stages: 4, codec: 'subspace+int8', staleness: 0, link: LINK },
    { name: '4 stages, none, async', stages: 4, codec: 'none', staleness: 1, link: LINK },
    { name: '4 stages, subspace+int8, async', stages: 4, codec: 'subspace+int8', staleness: 1, link: LINK },
  ];
  const rows: ThroughputRow[] = [];
  const profiles = new Map<string, ThroughputRow['costsMs']>();
  for (const c of configs) {
    const o: RunSpec = {
      ...withStages(base, c.stages),
      microBatches: M,
      codec: { ...base.codec, name: c.codec },
    };
    const key = `${c.stages}:${c.codec}`;
    if (!profiles.has(key)) profiles.set(key, await profile(o));
    const costs = profiles.get(key)!;
    const run = TrainingRun.create(gpu, o, corpus, { timeoutMs: 3_600_000, link: c.link });
    const seq = o.model.context;
    // A first step compiles the shaders: not timed.
    await run.pipeline.trainAsync([run.microBatches(0)], o.batch, seq, { staleness: 0, correction: 'none' });
    const data = Array.from({ length: steps }, (_, k) => run.microBatches(1 + k));
    const r = await run.pipeline.trainAsync(data, o.batch, seq, {
      staleness: c.staleness,
      correction: 'nesterov',
    });
    const rowsPerMicro = o.batch * seq;
    const bpt = run.bytesPerToken;
    // As the in-memory network counts a frame: payload, the micro-batch's token ids and a 128-byte header.
    const frameBytes = bpt.map((b) => rowsPerMicro * (b + 4) + 128);
    const replaySteps = 20;
    const replay = replaySchedule({
      stages: c.stages,
      microBatches: M,
      steps: replaySteps,
      staleness: c.staleness,
      costs,
      frameBytes,
      link: c.link,
    });
    const row: ThroughputRow = {
      name: c.name,
      stages: c.stages,
      codec: c.codec,
      staleness: c.staleness,
      microBatches: M,
      bytesPerToken: bpt[0] ?? 0,
      measuredTokensPerSecond: r.tokens / (r.ms / 1000),
      replayTokensPerSecond: (replaySteps * M * rowsPerMicro) / (replay.ms / 1000),
      replayBubble: replay.bubble,
      idealBubble: idealBubble(c.stages, M),
      replayUtilization: replay.utilization,
      costsMs: costs,
    };
    rows.push(row);
    say(
      `A ${c.name}: measured ${row.measuredTokensPerSecond.toFixed(0)} tok/s (one shared device); replayed on ` +
        `${c.stages} devices ${row.replayTokensPerSecond.toFixed(0)} tok/s, bubble ` +
        `${(100 * replay.bubble).toFixed(1)}% (ideal ${(100 * row.idealBubble).toFixed(1)}%) ` +
        `[${formatDuration((performance.now() - t0) / 1000)}]`,
    );
    run.destroy();
  }
  return rows;
}

// ---- B and C. training runs ----
const train = (name: string, o: RunSpec, staleness: number, correction: 'nesterov' | 'none') =>
  trainAndEvaluate(gpu, corpus, name, o, staleness, correction, t0);

async function compression(): Promise<TrainRow[]> {
  const rows: TrainRow[] = [];
  const k = subspaceK(base);
  const kSmall = Math.max(1, Math.floor(model.dModel / 16));
  for (const [name, kk] of [
    ['none', k],
    ['int8', k],
    ['subspace', k],
    ['subspace+int8', k],
    ['subspace+int8', kSmall],
  ] as Array<[CodecName, number]>) {
    const o: RunSpec = { ...base, codec: { ...base.codec, name, k: kk } };
    rows.push(await train(`B ${name}${name.startsWith('subspace') ? ` k=${kk}` : ''}`, o, 0, 'none'));
  }
  return rows;
}

async function asyncRuns(syncNone?: TrainRow): Promise<TrainRow[]> {
  const rows: TrainRow[] = [];
  // Stale gradients tolerate less learning rate: compare at the recipe's peak and at a third of it.
  const peak = base.optim.lr;
  for (const lr of [peak, peak / 3]) {
    const o: RunSpec = { ...base, optim: { ...base.optim, lr } };
    rows.push(lr === peak && syncNone ? syncNone : await train(`C sync, lr ${lr.toPrecision(2)}`, o, 0, 'none'));
    rows.push(await train(`C async, no correction, lr ${lr.toPrecision(2)}`, o, 1, 'none'));
    rows.push(await train(`C async, Nesterov look-ahead, lr ${lr.toPrecision(2)}`, o, 1, 'nesterov'));
  }
  return rows;
}

const previousFile = join(root, 'bench/results/pipeline.json');
const previous = existsSync(previousFile) ? JSON.parse(readFileSync(previousFile, 'utf8')) : {};
const A: ThroughputRow[] = parts.has('A') ? await throughput() : (previous.throughput ?? []);
const B: TrainRow[] = parts.has('B') ? await compression() : (previous.compression ?? []);
const C: TrainRow[] = parts.has('C')
  ? await asyncRuns(B[0]?.lr === base.optim.lr && B[0]?.steps === base.optim.steps ? B[0] : undefined)
  : (previous.async ?? []);

// ---- report ----
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const md: string[] = ['## Pipeline benchmark', ''];
const commit = gitCommit(root) ?? '';
if (parts.size < 3)
  md.push(
    `Parts ${[...parts].sort().join(', ')} measured in this run; the others are from the run of ` +
      `${String(previous.date ?? '?').slice(0, 16)}.`,
    '',
  );
md.push(
  `Generated by \`npm run bench:pipeline\` on ` +
    `${new Date().toISOString().slice(0, 10)}${commit ? ` at ${commit}` : ''}; device: ${device}; ` +
    `${cpus().length} CPU cores. Model: ${model.layers} blocks, dModel ${model.dModel}, context ` +
    `${model.context}, vocab ${model.vocab}; Brown corpus.`,
  '',
);
if (A.length) {
  const one = A[0];
  md.push(
    `### A. Throughput (${A[0].microBatches} micro-batches of ${base.batch}×${model.context} tokens per step; ` +
      `links 80 Mb/s, 50 ms)`,
    '',
  );
  md.push(
    '"measured": this process, all stages sharing one device. "replayed": the same schedule with the op times ' +
      'measured here, each stage on its own device (4 peers), frames on the shaped links.',
    '',
  );
  md.push(
    table(
      [
        'configuration',
        'B/token/boundary',
        'measured tok/s',
        'replayed tok/s',
        'vs 1 stage',
        'bubble (replayed)',
        '1F1B ideal',
      ],
      A.map((r) => [
        r.name,
        r.bytesPerToken ? r.bytesPerToken.toFixed(0) : '–',
        r.measuredTokensPerSecond.toFixed(0),
        r.replayTokensPerSecond.toFixed(0),
        `${(r.replayTokensPerSecond / one.replayTokensPerSecond).toFixed(2)}×`,
        r.stages > 1 ? pct(r.replayBubble) : '–',
        r.stages > 1 ? (r.staleness ? '(no flush)' : pct(r.idealBubble)) : '–',
      ]),
      ['l'],
    ),
    '',
  );
}
if (B.length) {
  const none = B[0];
  md.push(`### B. Compression (${none.steps} synchronous steps, ${none.tokens} tokens, same seed and batches)`, '');
  md.push(
    table(
      ['codec', 'B/token/boundary', 'fewer bytes', 'val loss', 'vs none', 'val bits/byte'],
      B.map((r) => [
        `${r.codec}${r.k ? ` (k=${r.k})` : ''}`,
        r.bytesPerToken.toFixed(1),
        `${r.compression.toFixed(1)}×`,
        r.valLoss.toFixed(4),
        `${(100 * (r.valLoss / none.valLoss - 1)).toFixed(2)}%`,
        r.valBpb.toFixed(3),
      ]),
      ['l'],
    ),
    '',
    `Unigram baseline: ${none.unigramBpb.toFixed(3)} bits/byte. Bytes per token count the payload; the token ` +
      `ids travel too in this engine (4 B/token) although every peer can rebuild them from the seed.`,
    '',
  );
}
if (C.length) {
  md.push(`### C. Asynchronous training at equal tokens (${C[0].tokens} tokens, staleness 1)`, '');
  md.push(
    table(
      ['peak lr', 'mode', 'val loss', 'vs sync', 'val bits/byte'],
      C.map((r, i) => {
        const sync = C[i - (i % 3)];
        return [
          r.lr.toPrecision(2),
          r.staleness ? (r.correction === 'nesterov' ? 'async, Nesterov look-ahead' : 'async, no correction') : 'sync',
          r.valLoss.toFixed(4),
          `${(100 * (r.valLoss / sync.valLoss - 1)).toFixed(2)}%`,
          r.valBpb.toFixed(3),
        ];
      }),
      ['l', 'l'],
    ),
    '',
  );
}
const text = md.join('\n');
console.log(`\n${text}`);
const dir = join(root, 'bench/results');
mkdirSync(dir, { recursive: true });
const partial = trainSteps !== 100;
const suffix = partial ? '.tmp' : '';
const ran = [...parts].sort().join(',');
writeFileSync(
  join(dir, `pipeline.json${suffix}`),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      commit,
      device,
      model: base,
      parts: ran,
      throughput: A,
      compression: B,
      async: C,
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(join(dir, `pipeline.md${suffix}`), text + '\n');
const palette = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7'];
const curves = [...B, ...C.filter((r) => r.staleness > 0 || r.lr !== base.optim.lr)];
if (curves.length) {
  writeFileSync(
    join(dir, `pipeline-loss.svg${suffix}`),
    lineChartSvg({
      title: 'Validation loss by codec and pipeline mode (Brown corpus)',
      xLabel: 'optimizer step',
      yLabel: 'validation cross-entropy (nats/token)',
      series: curves.map((r, i) => ({
        name: r.name.replace(/^[BC] /, ''),
        points: r.curve,
        color: palette[i % palette.length],
        markers: true,
      })),
      hlines: [{ y: unigram(corpus.train, model.vocab, []).entropy, label: 'unigram entropy', color: '#999' }],
    }),
  );
}
say(
  `wrote bench/results/pipeline.{json,md}${suffix}${curves.length ? ', pipeline-loss.svg' + suffix : ''} in ` +
    `${formatDuration((performance.now() - t0) / 1000)}`,
);
gpu.destroy();
