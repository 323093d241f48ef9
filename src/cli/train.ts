/**
 * `npm run train`: trains a GPT split into pipeline stages on the Brown corpus through the 1F1B engine, on the
 * local WebGPU device (lavapipe on a machine without a GPU), with a live progress bar, periodic validation
 * loss and bits per byte against the unigram baseline, and writes <out>/loss.csv, <out>/loss.svg,
 * <out>/summary.json and one checkpoint per stage (<out>/stage-<i>.safetensors).
 *
 *   npm run train -- --steps 300 --codec subspace+int8 --link 80mbit:50ms
 *   npm run train -- --help
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import { CODEC_NAMES, isSubspaceCodec, type CodecName } from '../compress/index.ts';
import { loadCorpus } from '../data/brown-node.ts';
import { VocabSizeError } from '../data/errors.ts';
import { adapterLabel } from '../gpu/adapter-info.ts';
import { Gpu, TesseraGpuError } from '../gpu/index.ts';
import { CheckpointError, readCheckpoint, saveStage } from '../model/checkpoint.ts';
import { NonFiniteGradientError } from '../model/stage.ts';
import { lineChartSvg } from '../train/chart.ts';
import type { LinkShape } from '../train/memory-transport.ts';
import { NonFiniteTensorError, type AsyncStepResult } from '../train/pipeline.ts';
import { formatBytes, formatDuration, ProgressBar } from '../train/progress.ts';
import { DEFAULT_EVAL_BATCHES, learningRate, TrainingRun } from '../train/recipe.ts';
import { stageCount, subspaceK } from '../train/run-derived.ts';
import { defaultWarmup, presetSpec, type RunSpec } from '../train/run-spec.ts';
import { idealBubble } from '../train/schedule.ts';
import { cli, nonEmpty, nonNegativeInt, nonNegativeNumber, positiveInt, usageError } from './args.ts';

/** A run: its RunSpec, and the local choices around it (how the pipeline steps, links, evaluation, output). */
interface Options {
  spec: RunSpec;
  staleness: number;
  correction: 'nesterov' | 'none';
  link?: LinkArg;
  evalEvery: number;
  evalBatches: number;
  out: string;
}

/** --link as given (for logs and summary.json) and as the engine shapes links. */
interface LinkArg {
  text: string;
  shape: LinkShape;
}

/** The command line as parsed: absent means "the device's default", which is known only once a device is open. */
interface TrainCli {
  stages?: number;
  blocks?: number;
  dModel?: number;
  heads?: number;
  context?: number;
  vocab?: number;
  batch?: number;
  micro?: number;
  seed?: number;
  steps?: number;
  lr?: number;
  warmup?: number;
  weightDecay?: number;
  beta2?: number;
  clip?: number;
  async: number;
  correction: 'nesterov' | 'none';
  codec: CodecName;
  k?: number;
  tail: number;
  link?: LinkArg;
  evalEvery?: number;
  evalBatches?: number;
  out?: string;
}

/** "80mbit:50ms", "200Mbps:0.05s", "1gbit" → bits per second and one-way latency. */
function parseLink(text: string): LinkArg {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|bps|b)?(?:\/s)?\s*(?::\s*(\d+(?:\.\d+)?)\s*(ms|s)?)?\s*$/i.exec(text);
  if (!m) throw new InvalidArgumentError('Must look like 80mbit:50ms.');
  const scale = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bitsPerSecond = Number(m[1]) * scale;
  const latencyMs = m[3] === undefined ? 0 : Number(m[3]) * (m[4]?.toLowerCase() === 's' ? 1000 : 1);
  if (!(bitsPerSecond > 0)) throw new InvalidArgumentError('The bandwidth must be > 0.');
  return { text, shape: { bitsPerSecond, latencyMs } };
}

const SOFTWARE = presetSpec(true);
const GPU = presetSpec(false);
/** A default for the help, read from the presets so it cannot drift: "64 / 256" when the device decides. */
const dflt = (of: (s: RunSpec) => number): string =>
  of(SOFTWARE) === of(GPU) ? String(of(SOFTWARE)) : `${of(SOFTWARE)} / ${of(GPU)}`;

const program = cli({
  name: 'train',
  usage: 'npm run train -- [options]',
  description:
    'Trains a GPT split into pipeline stages on the Brown corpus (1F1B), sized to the device, with a ' +
    'live progress bar; writes loss.csv, loss.svg, summary.json and one checkpoint per stage.',
  after: 'Ctrl-C stops after the current step and still writes everything.',
})
  .optionsGroup('Model and data (defaults: software adapter / real GPU):')
  .option('--stages <n>', `pipeline stages (${dflt(stageCount)})`, positiveInt)
  .option('--blocks <n>', `transformer blocks per stage (${dflt((s) => s.layout[0])})`, positiveInt)
  .option('--d-model <n>', `residual width (${dflt((s) => s.model.dModel)})`, positiveInt)
  .option('--heads <n>', `attention heads (${dflt((s) => s.model.heads)})`, positiveInt)
  .option('--context <n>', `sequence length (${dflt((s) => s.model.context)})`, positiveInt)
  .option(
    '--vocab <n>',
    `tokenizer vocabulary: 1024, 2048 or 4096 (${dflt((s) => s.model.vocab)}; npm run bench:vocab picks it)`,
    positiveInt,
  )
  .option('--batch <n>', `sequences per micro-batch (${dflt((s) => s.batch)})`, positiveInt)
  .option('--micro <n>', `micro-batches per optimizer step (${dflt((s) => s.microBatches)})`, positiveInt)
  .option('--seed <n>', `model, data and basis seed (${dflt((s) => s.seed)})`, nonNegativeInt)
  .optionsGroup('Optimisation:')
  .option('--steps <n>', `optimizer steps (${dflt((s) => s.optim.steps)})`, positiveInt)
  .option(
    '--lr <x>',
    `peak learning rate, linear warm-up then cosine to 10% (${dflt((s) => s.optim.lr)})`,
    nonNegativeNumber,
  )
  .option('--warmup <n>', 'warm-up steps (10% of --steps, at most 100)', nonNegativeInt)
  .option(
    '--weight-decay <x>',
    `AdamW decoupled weight decay on matrices (${dflt((s) => s.optim.weightDecay)})`,
    nonNegativeNumber,
  )
  .option('--clip <x>', `clip the global gradient norm to x (${dflt((s) => s.optim.clip)}; 0 = off)`, nonNegativeNumber)
  .option(
    '--async <n>',
    'asynchronous pipeline: forwards may run on weights up to n updates old, no flush between steps (0 = synchronous)',
    nonNegativeInt,
    0,
  )
  .addOption(
    new Option('--correction <name>', 'stale-gradient correction in async mode (nesterov = look-ahead)')
      .choices(['nesterov', 'none'])
      .default('nesterov'),
  )
  .option('--beta2 <x>', `AdamW second-moment decay (${dflt((s) => s.optim.beta2)})`, nonNegativeNumber)
  .optionsGroup('Boundaries:')
  .addOption(new Option('--codec <name>', 'boundary codec').choices(CODEC_NAMES).default('none'))
  .option('--k <n>', 'subspace dimension for subspace codecs (d-model/4)', positiveInt)
  .option('--tail <n>', 'boundaries before the head left uncompressed', nonNegativeInt, 0)
  .option('--link <spec>', 'shape every link, e.g. 80mbit:50ms or 200mbit:50ms (unshaped)', parseLink)
  .optionsGroup('Output:')
  .option('--eval-every <n>', 'validation every n steps (25 / 100)', positiveInt)
  .option('--eval-batches <n>', `fixed validation micro-batches (${DEFAULT_EVAL_BATCHES})`, positiveInt)
  .option(
    '--out <dir>',
    'output folder (runs/<timestamp>): loss.csv (step, train_loss, val_loss, val_bpb, tokens, ' +
      'seconds, bytes), loss.svg, summary.json, stage-<i>.safetensors',
    nonEmpty,
  );

/**
 * The one place the command line becomes a run: the device's preset RunSpec with the given options over it
 * (--stages × --blocks is a uniform layout; --seed seeds the weights, the data and the basis alike).
 */
function trainOptionsFromCli(c: TrainCli, software: boolean): Options {
  const d = presetSpec(software);
  const stages = c.stages ?? stageCount(d);
  const blocks = c.blocks ?? d.layout[0];
  const steps = c.steps ?? d.optim.steps;
  const seed = c.seed ?? d.seed;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const spec: RunSpec = {
    model: {
      vocab: c.vocab ?? d.model.vocab,
      dModel: c.dModel ?? d.model.dModel,
      heads: c.heads ?? d.model.heads,
      layers: stages * blocks,
      context: c.context ?? d.model.context,
      seed,
    },
    layout: Array.from({ length: stages }, () => blocks),
    // No --k: the spec leaves k out and subspaceK derives it from the width (d-model/4).
    codec: { name: c.codec, tail: c.tail, ...(c.k === undefined ? {} : { k: c.k }) },
    microBatches: c.micro ?? d.microBatches,
    batch: c.batch ?? d.batch,
    optim: {
      lr: c.lr ?? d.optim.lr,
      warmup: c.warmup ?? defaultWarmup(steps),
      steps,
      weightDecay: c.weightDecay ?? d.optim.weightDecay,
      beta2: c.beta2 ?? d.optim.beta2,
      clip: c.clip ?? d.optim.clip,
    },
    data: d.data,
    seed,
    snapshotEvery: d.snapshotEvery,
    // A local run sells nothing.
    pricePer1kTokens: 0,
  };
  return {
    spec,
    staleness: c.async,
    correction: c.correction,
    link: c.link,
    evalEvery: c.evalEvery ?? (software ? 25 : 100),
    evalBatches: c.evalBatches ?? DEFAULT_EVAL_BATCHES,
    out: resolve(c.out ?? join('runs', stamp)),
  };
}

/** CSV/log number: '' when there is none (not evaluated, step refused), NaN/Infinity spelled out. */
const fmtNum = (x: number | undefined, digits = 4): string =>
  x === undefined ? '' : Number.isFinite(x) ? x.toFixed(digits) : String(x);

async function main(): Promise<number> {
  // Bad options are refused here, before a device starts; the defaults depend on the device.
  const given = program.parse().opts<TrainCli>();
  const gpu = await Gpu.create();
  const software = gpu.adapter.isSoftware;
  const o = trainOptionsFromCli(given, software);
  const { spec } = o;
  const { model } = spec;
  if (given.k !== undefined && given.k > model.dModel)
    usageError(program, `--k ${given.k} exceeds --d-model ${model.dModel}`);
  const stages = stageCount(spec);
  const { batch, microBatches: micro } = spec;
  const { steps, lr, warmup } = spec.optim;
  const codec = spec.codec.name;
  const out = o.out;
  mkdirSync(out, { recursive: true });
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const device = adapterLabel(gpu.adapter);
  say(`[tessera] device: ${device}`);

  // ---- data, model, boundaries, engine ----
  const corpus = await loadCorpus(model.vocab);
  // In-process links: a silent stage is a slow one (a software adapter compiling its first kernels), not a lost peer.
  const run = TrainingRun.create(gpu, spec, corpus, {
    timeoutMs: 3_600_000,
    link: o.link?.shape,
    evalBatches: o.evalBatches,
  });
  const { pipeline, validation: val, cfg } = run;
  say(
    `[tessera] data: Brown corpus, ${corpus.train.length} train / ${corpus.val.length} val tokens (vocab ` +
      `${model.vocab}, ${run.sampler.batchesPerPass} batches per data pass); validation: ${val.micro.length} × ` +
      `${batch} × ${model.context} tokens = ${val.bytes} bytes`,
  );
  say(
    `[tessera] unigram baseline: entropy ${val.unigramNats.toFixed(3)} nats/token = ` +
      `${val.unigramBpb.toFixed(3)} bits/byte (its cross-entropy on the validation batches: ` +
      `${val.unigramValBpb.toFixed(3)} bpb)`,
  );
  const counts = run.paramCounts;
  say(
    `[tessera] model: ${stages} stages × ${spec.layout[0]} block(s), dModel ${model.dModel}, ${model.heads} ` +
      `heads, context ${model.context}, vocab ${model.vocab}; parameters per stage ` +
      `[${counts.map((c) => `${(c / 1e3).toFixed(0)}k`).join(', ')}] = ` +
      `${(counts.reduce((a, b) => a + b, 0) / 1e6).toFixed(2)}M`,
  );
  const perToken = run.bytesPerToken;
  const mode =
    o.staleness > 0
      ? `asynchronous 1F1B (staleness ≤ ${o.staleness}, ` +
        `${o.correction === 'nesterov' ? 'Nesterov look-ahead' : 'no correction'})`
      : `1F1B (ideal bubble ${(100 * idealBubble(stages, micro)).toFixed(0)}%)`;
  const tail = spec.codec.tail;
  say(
    `[tessera] training: ${steps} steps × ${micro} micro-batches × ${batch} × ${model.context} = ` +
      `${run.tokensPerStep} tokens/step, ${mode}, AdamW lr ${lr} (warm-up ${warmup}, cosine), codec ` +
      `${codec}${tail ? ` (last ${tail} boundaries none)` : ''}` +
      (run.codecs ? ` = [${perToken.map((b) => b.toFixed(1)).join(', ')}] bytes/token vs ${4 * model.dModel}` : '') +
      (o.link ? `, links ${o.link.text}` : ''),
  );
  say(`[tessera] output: ${out}`);

  // ---- outputs ----
  const csvPath = join(out, 'loss.csv');
  writeFileSync(csvPath, 'step,train_loss,val_loss,val_bpb,tokens,seconds,bytes\n');
  const trainPts: Array<[number, number]> = [];
  const valPts: Array<[number, number]> = [];
  const writeChart = () => {
    const svg = lineChartSvg({
      title:
        `Tessera: ${stages}-stage GPT on Brown (dModel ${model.dModel}, vocab ${model.vocab}, codec ` +
        `${codec}${o.staleness ? `, async ${o.staleness}` : ''})`,
      xLabel: 'optimizer step',
      yLabel: 'cross-entropy (nats/token)',
      series: [
        { name: 'train loss', points: trainPts, color: '#4e79a7' },
        { name: 'validation loss', points: valPts, color: '#e15759', markers: true },
      ],
      hlines: [{ y: val.unigramNats, label: `unigram entropy (${val.unigramNats.toFixed(2)})`, color: '#59a14f' }],
    });
    writeFileSync(join(out, 'loss.svg'), svg);
  };

  // ---- loop ----
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
  };
  process.on('SIGINT', onSigint);
  const bar = new ProgressBar();
  const t0 = performance.now();
  let trainMs = 0;
  let tokens = 0;
  let bytes = 0;
  let refused = 0;
  let lastLoss: number | undefined;
  let valLoss: number | undefined;
  let valBpb: number | undefined;
  const recent: number[] = [];
  const evaluate = async (step: number) => {
    ({ loss: valLoss, bpb: valBpb } = await run.evaluate());
    valPts.push([step, valLoss]);
  };
  const state = (step: number) => ({
    step,
    total: steps,
    loss: lastLoss,
    valLoss,
    valBpb,
    refused,
    tokensPerSecond: trainMs > 0 ? tokens / (trainMs / 1000) : undefined,
    bytes,
    elapsed: (performance.now() - t0) / 1000,
  });
  await evaluate(0);
  appendFileSync(csvPath, `0,,${fmtNum(valLoss)},${fmtNum(valBpb)},0,0.0,0\n`);
  bar.log(`step 0: val loss ${valLoss!.toFixed(4)} (${valBpb!.toFixed(3)} bpb)`);
  bar.update(state(0));
  let done = 0;
  let lastRecorded = 0;
  const record = (step: number, loss: number | undefined, evalNow: boolean) => {
    lastRecorded = step;
    if (loss !== undefined) {
      lastLoss = loss;
      trainPts.push([step, loss]);
      recent.push(loss);
      if (recent.length > 10) recent.shift();
    }
    const secs = (performance.now() - t0) / 1000;
    const row = [step, fmtNum(loss), evalNow ? fmtNum(valLoss) : '', evalNow ? fmtNum(valBpb) : ''];
    appendFileSync(csvPath, `${[...row, tokens, secs.toFixed(1), bytes].join(',')}\n`);
    if (evalNow) {
      writeChart();
      bar.log(
        `step ${step}: train loss ${loss === undefined ? '(refused)' : fmtNum(loss)}  val loss ` +
          `${fmtNum(valLoss)} (${fmtNum(valBpb, 3)} bpb; unigram ${val.unigramBpb.toFixed(3)})`,
      );
    }
    bar.update(state(step), evalNow);
  };
  const isRefusal = (e: unknown) => e instanceof NonFiniteGradientError || e instanceof NonFiniteTensorError;
  while (done < steps && !stop) {
    // Synchronous: one step at a time. Asynchronous: run without a flush up to the next evaluation point.
    const until = o.staleness > 0 ? Math.min(steps, (Math.floor(done / o.evalEvery) + 1) * o.evalEvery) : done + 1;
    const chunk = Array.from({ length: until - done }, (_, i) => run.microBatches(done + i));
    const from = done;
    try {
      if (o.staleness === 0) {
        run.adam.lr = learningRate(done, spec); // the engine reads opts.adam at each update
        const r = await pipeline.trainStep(chunk[0], batch, model.context);
        trainMs += r.ms;
        tokens += r.tokens;
        bytes += r.bytes;
        done++;
        const evalNow = done % o.evalEvery === 0 || done === steps || stop;
        if (evalNow) await evaluate(done);
        record(done, r.loss, evalNow);
      } else {
        const t = performance.now();
        const ms0 = trainMs;
        const bytes0 = bytes - pipeline.bytesSent();
        let finalLoss: number | undefined;
        const onStep = (r: AsyncStepResult) => {
          const step = from + 1 + r.step;
          tokens += run.tokensPerStep;
          trainMs = ms0 + (performance.now() - t);
          bytes = bytes0 + pipeline.bytesSent();
          if (r.refused.length) {
            refused++;
            bar.log(`step ${step}: stages [${r.refused}] refused the update (non-finite gradient)`);
          }
          if (step < until) record(step, r.loss, false);
          else finalLoss = r.loss;
        };
        await pipeline.trainAsync(chunk, batch, model.context, {
          staleness: o.staleness,
          correction: o.correction,
          lr: (k) => learningRate(from + k, spec),
          onStep,
        });
        done = until;
        await evaluate(done);
        record(done, finalLoss, true);
      }
    } catch (e) {
      if (!isRefusal(e)) throw e;
      refused++;
      // Synchronous: the step is refused as a whole. Asynchronous: applied updates stay; the rest of the chunk is
      // dropped.
      done = Math.max(done, lastRecorded) + 1;
      bar.log(`step ${done}: refused (${(e as Error).message}); going on with the next batch`);
      record(done, undefined, false);
    }
  }
  bar.done();
  process.off('SIGINT', onSigint);
  if (stop) say(`[tessera] interrupted after step ${done}`);
  writeChart();

  // ---- checkpoints ----
  const files: string[] = [];
  for (const stage of pipeline.stages) {
    const bytesOut = await saveStage(stage);
    const file = join(out, `stage-${stage.spec.index}.safetensors`);
    writeFileSync(file, bytesOut);
    files.push(`${file} (${formatBytes(bytesOut.length)})`);
    try {
      await readCheckpoint(bytesOut, { cfg, spec: stage.spec }); // what a receiving peer checks
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      say(`[tessera] warning: ${file} would be refused by a peer: ${e.message}`);
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  const finalTrain = recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : NaN;
  const summary = {
    device,
    software,
    model: cfg,
    stages,
    blocksPerStage: spec.layout[0],
    microBatches: micro,
    batch,
    steps: done,
    refused,
    lr,
    warmup,
    staleness: o.staleness,
    correction: o.staleness ? o.correction : undefined,
    codec,
    k: isSubspaceCodec(codec) ? subspaceK(spec) : undefined,
    tail,
    link: o.link?.text ?? null,
    spec,
    tokens,
    seconds: elapsed,
    trainSeconds: trainMs / 1000,
    tokensPerSecond: tokens / (trainMs / 1000),
    bytesOnWire: bytes,
    bytesPerTokenPerBoundary: perToken,
    finalTrainLoss: finalTrain,
    finalValLoss: valLoss,
    finalValBpb: valBpb,
    unigram: { entropyNats: val.unigramNats, entropyBpb: val.unigramBpb, valCrossEntropyBpb: val.unigramValBpb },
    validation: { batches: val.micro.length, tokens: val.tokens, bytes: val.bytes },
  };
  writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  say(
    `[tessera] ${done} steps (${refused} refused) in ${formatDuration(elapsed)}: ${tokens} tokens at ` +
      `${summary.tokensPerSecond.toFixed(0)} tokens/s (training time), ${formatBytes(bytes)} between stages`,
  );
  say(
    `[tessera] final train loss ${fmtNum(finalTrain)} (mean of last ${recent.length} steps), validation loss ` +
      `${fmtNum(valLoss)} = ${fmtNum(valBpb, 3)} bits/byte; unigram baseline ${val.unigramBpb.toFixed(3)} ` +
      `bits/byte (entropy ${val.unigramNats.toFixed(3)} nats/token)`,
  );
  say(`[tessera] wrote ${csvPath}, ${join(out, 'loss.svg')}, ${join(out, 'summary.json')}`);
  for (const f of files) say(`[tessera] wrote ${f}`);
  run.destroy();
  gpu.destroy();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    // Typed errors (a config beyond the device's limits, a missing tokenizer) explain themselves; others need the
    // stack.
    const typed = e instanceof TesseraGpuError || e instanceof VocabSizeError;
    process.stderr.write(
      `[tessera] train failed: ` +
        `${e instanceof Error ? (typed ? `${e.name}: ${e.message}` : (e.stack ?? e.message)) : String(e)}\n`,
    );
    process.exit(1);
  },
);
