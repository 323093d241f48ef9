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
import { parseArgs } from 'node:util';
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
import { defaultRecipe, learningRate, TrainingRun, type RecipeOptions } from '../train/recipe.ts';
import { idealBubble } from '../train/schedule.ts';

const HELP = `Usage: npm run train -- [options]

Trains a GPT split into pipeline stages on the Brown corpus (1F1B), sized to the device.

Model and data (defaults: software adapter / real GPU)
  --stages N          pipeline stages (4)
  --blocks N          transformer blocks per stage (1 / 2)
  --d-model N         residual width (64 / 256)
  --heads N           attention heads (4)
  --context N         sequence length (64 / 128)
  --vocab N           tokenizer vocabulary: 1024, 2048 or 4096 (4096 / 2048;
                      npm run bench:vocab picks it)
  --batch N           sequences per micro-batch (4 / 8)
  --micro N           micro-batches per optimizer step (4 / 8)
  --seed N            model, data and basis seed (1)
Optimisation
  --steps N           optimizer steps (200 / 2000)
  --lr X              peak learning rate, linear warm-up then cosine to 10% (3e-3 / 1e-3)
  --warmup N          warm-up steps (10% of --steps, at most 100)
  --weight-decay X    AdamW decoupled weight decay on matrices (0.1)
  --clip X            clip the global gradient norm to X (1.0; 0 = off)
  --async N           asynchronous pipeline: forwards may run on weights up to N updates old, no
                      flush between steps (0 = synchronous)
  --correction NAME   stale-gradient correction in async mode: nesterov (look-ahead) | none (nesterov)
  --beta2 X           AdamW second-moment decay (0.95)
Boundaries
  --codec NAME        ${CODEC_NAMES.join(' | ')} (none)
  --k N               subspace dimension for subspace codecs (d-model/4)
  --tail N            boundaries before the head left uncompressed (0)
  --link SPEC         shape every link, e.g. 80mbit:50ms or 200mbit:50ms (unshaped)
Output
  --eval-every N      validation every N steps (25 / 100)
  --eval-batches N    fixed validation micro-batches (8)
  --out DIR           output folder (runs/<timestamp>): loss.csv (step, train_loss, val_loss, val_bpb,
                      tokens, seconds, bytes), loss.svg, summary.json, stage-<i>.safetensors
  --help

Ctrl-C stops after the current step and still writes everything.
`;

interface Options extends RecipeOptions {
  staleness: number;
  correction: 'nesterov' | 'none';
  linkText?: string;
  evalEvery: number;
  out: string;
}

class UsageError extends Error {}

/** "80mbit:50ms", "200Mbps:0.05s", "1gbit" → bits per second and one-way latency. */
function parseLink(text: string): LinkShape {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|bps|b)?(?:\/s)?\s*(?::\s*(\d+(?:\.\d+)?)\s*(ms|s)?)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`--link must look like 80mbit:50ms, got '${text}'`);
  const scale = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bitsPerSecond = Number(m[1]) * scale;
  const latencyMs = m[3] === undefined ? 0 : Number(m[3]) * (m[4]?.toLowerCase() === 's' ? 1000 : 1);
  if (!(bitsPerSecond > 0)) throw new UsageError(`--link bandwidth must be > 0, got '${text}'`);
  return { bitsPerSecond, latencyMs };
}

function parseOptions(argv: string[], software: boolean): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      stages: { type: 'string' },
      blocks: { type: 'string' },
      'd-model': { type: 'string' },
      heads: { type: 'string' },
      context: { type: 'string' },
      vocab: { type: 'string' },
      batch: { type: 'string' },
      micro: { type: 'string' },
      seed: { type: 'string' },
      steps: { type: 'string' },
      lr: { type: 'string' },
      warmup: { type: 'string' },
      'weight-decay': { type: 'string' },
      beta2: { type: 'string' },
      clip: { type: 'string' },
      async: { type: 'string' },
      correction: { type: 'string' },
      codec: { type: 'string' },
      k: { type: 'string' },
      tail: { type: 'string' },
      link: { type: 'string' },
      'eval-every': { type: 'string' },
      'eval-batches': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return undefined;
  const int = (name: string, v: string | undefined, dflt: number, min = 1): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
    return n;
  };
  const num = (name: string, v: string | undefined, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a number ≥ 0, got '${v}'`);
    return n;
  };
  const d = defaultRecipe(software);
  const dModel = int('d-model', values['d-model'], d.dModel);
  const steps = int('steps', values.steps, d.steps);
  const codec = (values.codec ?? 'none') as CodecName;
  if (!CODEC_NAMES.includes(codec))
    throw new UsageError(`--codec must be one of ${CODEC_NAMES.join(', ')}, got '${values.codec}'`);
  const k = int('k', values.k, Math.max(1, Math.floor(dModel / 4)));
  if (k > dModel) throw new UsageError(`--k ${k} exceeds --d-model ${dModel}`);
  const correction = values.correction ?? 'nesterov';
  if (correction !== 'nesterov' && correction !== 'none')
    throw new UsageError(`--correction must be nesterov or none, got '${correction}'`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  return {
    stages: int('stages', values.stages, d.stages),
    blocks: int('blocks', values.blocks, d.blocks),
    dModel,
    heads: int('heads', values.heads, d.heads),
    context: int('context', values.context, d.context),
    vocab: int('vocab', values.vocab, d.vocab),
    batch: int('batch', values.batch, d.batch),
    micro: int('micro', values.micro, d.micro),
    seed: int('seed', values.seed, d.seed, 0),
    steps,
    lr: num('lr', values.lr, d.lr),
    warmup: int('warmup', values.warmup, Math.min(100, Math.ceil(steps / 10)), 0),
    weightDecay: num('weight-decay', values['weight-decay'], d.weightDecay),
    beta2: num('beta2', values.beta2, d.beta2),
    clip: num('clip', values.clip, d.clip),
    staleness: int('async', values.async, 0, 0),
    correction,
    codec,
    k,
    tail: int('tail', values.tail, 0, 0),
    link: values.link === undefined ? undefined : parseLink(values.link),
    linkText: values.link,
    evalEvery: int('eval-every', values['eval-every'], software ? 25 : 100),
    evalBatches: int('eval-batches', values['eval-batches'], d.evalBatches),
    out: resolve(values.out ?? join('runs', stamp)),
  };
}

/** CSV/log number: '' when there is none (not evaluated, step refused), NaN/Infinity spelled out. */
const fmtNum = (x: number | undefined, digits = 4): string =>
  x === undefined ? '' : Number.isFinite(x) ? x.toFixed(digits) : String(x);

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  let pre: Options | undefined;
  try {
    // Reject bad options before starting a device; the defaults depend on the device (re-parsed below).
    pre = parseOptions(argv, false);
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(e as Error).message}\n\n${HELP}`);
      return 2;
    }
    throw e;
  }
  if (!pre) {
    process.stdout.write(HELP);
    return 0;
  }
  const gpu = await Gpu.create();
  const software = gpu.adapter.isSoftware;
  const o: Options = software ? parseOptions(argv, true)! : pre;
  const out = o.out;
  mkdirSync(out, { recursive: true });
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const device = adapterLabel(gpu.adapter);
  say(`[tessera] device: ${device}`);

  // ---- data, model, boundaries, engine ----
  const corpus = await loadCorpus(o.vocab);
  // In-process links: a silent stage is a slow one (a software adapter compiling its first kernels), not a lost peer.
  const run = TrainingRun.create(gpu, o, corpus, { timeoutMs: 3_600_000 });
  const { pipeline, validation: val, cfg } = run;
  say(
    `[tessera] data: Brown corpus, ${corpus.train.length} train / ${corpus.val.length} val tokens (vocab ${o.vocab}, ${run.sampler.batchesPerEpoch} batches per epoch); validation: ${val.micro.length} × ${o.batch} × ${o.context} tokens = ${val.bytes} bytes`,
  );
  say(
    `[tessera] unigram baseline: entropy ${val.unigramNats.toFixed(3)} nats/token = ${val.unigramBpb.toFixed(3)} bits/byte (its cross-entropy on the validation batches: ${val.unigramValBpb.toFixed(3)} bpb)`,
  );
  const counts = run.paramCounts;
  say(
    `[tessera] model: ${o.stages} stages × ${o.blocks} block(s), dModel ${o.dModel}, ${o.heads} heads, context ${o.context}, vocab ${o.vocab}; parameters per stage [${counts.map((c) => `${(c / 1e3).toFixed(0)}k`).join(', ')}] = ${(counts.reduce((a, b) => a + b, 0) / 1e6).toFixed(2)}M`,
  );
  const perToken = run.bytesPerToken;
  const mode =
    o.staleness > 0
      ? `asynchronous 1F1B (staleness ≤ ${o.staleness}, ${o.correction === 'nesterov' ? 'Nesterov look-ahead' : 'no correction'})`
      : `1F1B (ideal bubble ${(100 * idealBubble(o.stages, o.micro)).toFixed(0)}%)`;
  say(
    `[tessera] training: ${o.steps} steps × ${o.micro} micro-batches × ${o.batch} × ${o.context} = ${run.tokensPerStep} tokens/step, ${mode}, AdamW lr ${o.lr} (warm-up ${o.warmup}, cosine), codec ${o.codec}${o.tail ? ` (last ${o.tail} boundaries none)` : ''}${run.codecs ? ` = [${perToken.map((b) => b.toFixed(1)).join(', ')}] bytes/token vs ${4 * o.dModel}` : ''}${o.link ? `, links ${o.linkText}` : ''}`,
  );
  say(`[tessera] output: ${out}`);

  // ---- outputs ----
  const csvPath = join(out, 'loss.csv');
  writeFileSync(csvPath, 'step,train_loss,val_loss,val_bpb,tokens,seconds,bytes\n');
  const trainPts: Array<[number, number]> = [];
  const valPts: Array<[number, number]> = [];
  const writeChart = () => {
    const svg = lineChartSvg({
      title: `Tessera: ${o.stages}-stage GPT on Brown (dModel ${o.dModel}, vocab ${o.vocab}, codec ${o.codec}${o.staleness ? `, async ${o.staleness}` : ''})`,
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
    total: o.steps,
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
    appendFileSync(
      csvPath,
      `${step},${fmtNum(loss)},${evalNow ? fmtNum(valLoss) : ''},${evalNow ? fmtNum(valBpb) : ''},${tokens},${secs.toFixed(1)},${bytes}\n`,
    );
    if (evalNow) {
      writeChart();
      bar.log(
        `step ${step}: train loss ${loss === undefined ? '(refused)' : fmtNum(loss)}  val loss ${fmtNum(valLoss)} (${fmtNum(valBpb, 3)} bpb; unigram ${val.unigramBpb.toFixed(3)})`,
      );
    }
    bar.update(state(step), evalNow);
  };
  const isRefusal = (e: unknown) => e instanceof NonFiniteGradientError || e instanceof NonFiniteTensorError;
  while (done < o.steps && !stop) {
    // Synchronous: one step at a time. Asynchronous: run without a flush up to the next evaluation point.
    const until = o.staleness > 0 ? Math.min(o.steps, (Math.floor(done / o.evalEvery) + 1) * o.evalEvery) : done + 1;
    const chunk = Array.from({ length: until - done }, (_, i) => run.microBatches(done + i));
    const from = done;
    try {
      if (o.staleness === 0) {
        run.adam.lr = learningRate(done, o); // the engine reads opts.adam at each update
        const r = await pipeline.trainStep(chunk[0], o.batch, o.context);
        trainMs += r.ms;
        tokens += r.tokens;
        bytes += r.bytes;
        done++;
        const evalNow = done % o.evalEvery === 0 || done === o.steps || stop;
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
        await pipeline.trainAsync(chunk, o.batch, o.context, {
          staleness: o.staleness,
          correction: o.correction,
          lr: (k) => learningRate(from + k, o),
          onStep,
        });
        done = until;
        await evaluate(done);
        record(done, finalLoss, true);
      }
    } catch (e) {
      if (!isRefusal(e)) throw e;
      refused++;
      // Synchronous: the step is refused as a whole. Asynchronous: applied updates stay; the rest of the chunk is dropped.
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
    stages: o.stages,
    blocksPerStage: o.blocks,
    microBatches: o.micro,
    batch: o.batch,
    steps: done,
    refused,
    lr: o.lr,
    warmup: o.warmup,
    staleness: o.staleness,
    correction: o.staleness ? o.correction : undefined,
    codec: o.codec,
    k: isSubspaceCodec(o.codec) ? o.k : undefined,
    tail: o.tail,
    link: o.linkText ?? null,
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
    `[tessera] ${done} steps (${refused} refused) in ${formatDuration(elapsed)}: ${tokens} tokens at ${summary.tokensPerSecond.toFixed(0)} tokens/s (training time), ${formatBytes(bytes)} between stages`,
  );
  say(
    `[tessera] final train loss ${fmtNum(finalTrain)} (mean of last ${recent.length} steps), validation loss ${fmtNum(valLoss)} = ${fmtNum(valBpb, 3)} bits/byte; unigram baseline ${val.unigramBpb.toFixed(3)} bits/byte (entropy ${val.unigramNats.toFixed(3)} nats/token)`,
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
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    // Typed errors (a config beyond the device's limits, a missing tokenizer) explain themselves; others need the stack.
    const typed = e instanceof TesseraGpuError || e instanceof VocabSizeError;
    process.stderr.write(
      `[tessera] train failed: ${e instanceof Error ? (typed ? `${e.name}: ${e.message}` : (e.stack ?? e.message)) : String(e)}\n`,
    );
    process.exit(1);
  },
);
