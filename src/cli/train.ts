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
import {
  boundaryCodecs, CODEC_NAMES, isSubspaceCodec, makeBasis, stageNeedsSubspace, subspaceInit, subspaceProject,
  type BoundaryPlan, type Codec, type CodecName,
} from '../compress/index.ts';
import { validationBatches, BatchSampler, type Batch } from '../data/batches.ts';
import { encodeCorpus, loadTokenizer } from '../data/brown-node.ts';
import { VocabSizeError } from '../data/errors.ts';
import { bitsPerByte, type Tokenizer } from '../data/tokenizer.ts';
import { Gpu, TesseraGpuError } from '../gpu/index.ts';
import { CheckpointError, readCheckpoint, saveStage } from '../model/checkpoint.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import { stageParamSpecs } from '../model/params.ts';
import { NonFiniteGradientError, type Stage } from '../model/stage.ts';
import type { AdamWConfig } from '../ops/adamw.ts';
import { lineChartSvg } from '../train/chart.ts';
import { InMemoryNetwork, type LinkShape } from '../train/memory-transport.ts';
import { NonFiniteTensorError, Pipeline, type MicroBatchData } from '../train/pipeline.ts';
import { formatBytes, formatDuration, ProgressBar } from '../train/progress.ts';
import { idealBubble } from '../train/schedule.ts';

const HELP = `Usage: npm run train -- [options]

Trains a GPT split into pipeline stages on the Brown corpus (1F1B, synchronous), sized to the device.

Model and data (defaults: software adapter / real GPU)
  --stages N          pipeline stages (4)
  --blocks N          transformer blocks per stage (1 / 2)
  --d-model N         residual width (64 / 256)
  --heads N           attention heads (4)
  --context N         sequence length (64 / 128)
  --vocab N           tokenizer vocabulary: 1024, 2048 or 4096 (1024 / 2048)
  --batch N           sequences per micro-batch (4 / 8)
  --micro N           micro-batches per optimizer step (4 / 8)
  --seed N            model, data and basis seed (1)
Optimisation
  --steps N           optimizer steps (200 / 2000)
  --lr X              peak learning rate, linear warm-up then cosine to 10% (3e-3 / 1e-3)
  --warmup N          warm-up steps (10% of --steps, at most 100)
  --weight-decay X    AdamW decoupled weight decay on matrices (0.1)
  --clip X            clip the global gradient norm to X (1.0; 0 = off)
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

interface Options {
  stages: number;
  blocks: number;
  dModel: number;
  heads: number;
  context: number;
  vocab: number;
  batch: number;
  micro: number;
  seed: number;
  steps: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  beta2: number;
  clip: number;
  codec: CodecName;
  k: number;
  tail: number;
  link?: LinkShape;
  linkText?: string;
  evalEvery: number;
  evalBatches: number;
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
      stages: { type: 'string' }, blocks: { type: 'string' }, 'd-model': { type: 'string' }, heads: { type: 'string' },
      context: { type: 'string' }, vocab: { type: 'string' }, batch: { type: 'string' }, micro: { type: 'string' },
      seed: { type: 'string' }, steps: { type: 'string' }, lr: { type: 'string' }, warmup: { type: 'string' },
      'weight-decay': { type: 'string' }, beta2: { type: 'string' }, clip: { type: 'string' }, codec: { type: 'string' }, k: { type: 'string' }, tail: { type: 'string' },
      link: { type: 'string' }, 'eval-every': { type: 'string' }, 'eval-batches': { type: 'string' }, out: { type: 'string' },
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
  const dModel = int('d-model', values['d-model'], software ? 64 : 256);
  const steps = int('steps', values.steps, software ? 200 : 2000);
  const codec = (values.codec ?? 'none') as CodecName;
  if (!CODEC_NAMES.includes(codec)) throw new UsageError(`--codec must be one of ${CODEC_NAMES.join(', ')}, got '${values.codec}'`);
  const k = int('k', values.k, Math.max(1, Math.floor(dModel / 4)));
  if (k > dModel) throw new UsageError(`--k ${k} exceeds --d-model ${dModel}`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  return {
    stages: int('stages', values.stages, 4),
    blocks: int('blocks', values.blocks, software ? 1 : 2),
    dModel,
    heads: int('heads', values.heads, 4),
    context: int('context', values.context, software ? 64 : 128),
    vocab: int('vocab', values.vocab, software ? 1024 : 2048),
    batch: int('batch', values.batch, software ? 4 : 8),
    micro: int('micro', values.micro, software ? 4 : 8),
    seed: int('seed', values.seed, 1, 0),
    steps,
    lr: num('lr', values.lr, software ? 3e-3 : 1e-3),
    warmup: int('warmup', values.warmup, Math.min(100, Math.ceil(steps / 10)), 0),
    weightDecay: num('weight-decay', values['weight-decay'], 0.1),
    beta2: num('beta2', values.beta2, 0.95),
    clip: num('clip', values.clip, 1),
    codec,
    k,
    tail: int('tail', values.tail, 0, 0),
    link: values.link === undefined ? undefined : parseLink(values.link),
    linkText: values.link,
    evalEvery: int('eval-every', values['eval-every'], software ? 25 : 100),
    evalBatches: int('eval-batches', values['eval-batches'], 8),
    out: resolve(values.out ?? join('runs', stamp)),
  };
}

/** Linear warm-up to `peak`, then cosine decay to 10% of it at the last step. */
function learningRate(step: number, o: Options): number {
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const t = o.steps <= o.warmup + 1 ? 1 : (step - o.warmup) / (o.steps - o.warmup - 1);
  return o.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, t))));
}

/** The unigram baseline: entropy of the train split's token distribution, and its cross-entropy on `targets`. */
function unigram(train: Int32Array, vocab: number, targets: Int32Array[]): { entropy: number; valNats: number } {
  const counts = new Float64Array(vocab);
  for (const t of train) counts[t]++;
  let entropy = 0;
  for (const c of counts) if (c > 0) entropy -= (c / train.length) * Math.log(c / train.length);
  // Add-one smoothing so a token unseen in training costs a finite amount on validation.
  const denom = train.length + vocab;
  let valNats = 0;
  for (const ts of targets) for (const t of ts) valNats -= Math.log((counts[t] + 1) / denom);
  return { entropy, valNats };
}

function toMicro(b: Batch): MicroBatchData {
  return { ids: b.ids, targets: b.targets };
}

/** CSV/log number: '' when there is none (not evaluated, step refused), NaN/Infinity spelled out. */
const fmtNum = (x: number | undefined, digits = 4): string => (x === undefined ? '' : Number.isFinite(x) ? x.toFixed(digits) : String(x));

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
  const cfg: ModelConfig = { vocab: o.vocab, dModel: o.dModel, heads: o.heads, layers: o.stages * o.blocks, context: o.context, seed: o.seed };
  validateConfig(cfg, gpu.limits);
  const out = o.out;
  mkdirSync(out, { recursive: true });
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const device = `${gpu.adapter.description || gpu.adapter.device || gpu.adapter.vendor || 'unknown'}${software ? ' (software adapter)' : ''}`;
  say(`[tessera] device: ${device}`);

  // ---- data ----
  const tok: Tokenizer = loadTokenizer(o.vocab);
  const trainStream = await encodeCorpus(tok, 'train');
  const valStream = await encodeCorpus(tok, 'val');
  const sampler = new BatchSampler(trainStream, { seed: o.seed, batchSize: o.batch, seq: o.context });
  const valBatches = validationBatches(valStream, { batchSize: o.batch, seq: o.context, maxBatches: o.evalBatches });
  const valMicro = valBatches.map(toMicro);
  const valTokens = valBatches.length * o.batch * o.context;
  const valBytes = valBatches.reduce((a, b) => a + tok.countBytes(b.targets), 0);
  const uni = unigram(trainStream, o.vocab, valBatches.map((b) => b.targets));
  const uniEntropyBpb = bitsPerByte(uni.entropy * valTokens, valBytes);
  const uniValBpb = bitsPerByte(uni.valNats, valBytes);
  say(`[tessera] data: Brown corpus, ${trainStream.length} train / ${valStream.length} val tokens (vocab ${o.vocab}, ${sampler.batchesPerEpoch} batches per epoch); validation: ${valBatches.length} × ${o.batch} × ${o.context} tokens = ${valBytes} bytes`);
  say(`[tessera] unigram baseline: entropy ${uni.entropy.toFixed(3)} nats/token = ${uniEntropyBpb.toFixed(3)} bits/byte (its cross-entropy on the validation batches: ${(uni.valNats / valTokens).toFixed(3)} nats = ${uniValBpb.toFixed(3)} bpb)`);

  // ---- model, boundaries, engine ----
  const adam: AdamWConfig = { lr: learningRate(0, o), beta1: 0.9, beta2: o.beta2, eps: 1e-8, weightDecay: o.weightDecay };
  const plan: BoundaryPlan = { codec: o.codec, uncompressedTail: o.tail };
  const codecParams = { seed: o.seed, k: o.k, vocab: o.vocab, width: o.dModel };
  let codecs: Codec[] | undefined;
  let needs: boolean[] = [];
  const subspace = isSubspaceCodec(o.codec);
  if (o.codec !== 'none') {
    codecs = boundaryCodecs(o.stages, plan, codecParams);
    needs = Array.from({ length: o.stages }, (_, s) => stageNeedsSubspace(s, o.stages, plan));
  }
  const basis = subspace ? makeBasis(codecParams) : undefined;
  const link = o.link;
  const network = new InMemoryNetwork(link ? () => link : undefined);
  const pipeline = Pipeline.create(gpu, {
    model: cfg, stages: o.stages, adam, codecs, network, modelName: 'brown', clipNorm: o.clip > 0 ? o.clip : undefined,
    // In-process links: a silent stage is a slow one (a software adapter compiling its first kernels), not a lost peer.
    timeoutMs: 3_600_000,
    afterStep: basis ? (stage: Stage) => { if (needs[stage.spec.index]) subspaceProject(gpu, stage, basis); } : undefined,
  });
  if (basis) for (const ws of pipeline.workers) for (const w of ws) if (needs[w.stage.spec.index]) subspaceInit(gpu, w.stage, basis);
  const paramCount = (s: Stage) => stageParamSpecs(cfg, s.spec).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  const counts = pipeline.stages.map(paramCount);
  const tokensPerStep = o.micro * o.batch * o.context;
  say(`[tessera] model: ${o.stages} stages × ${o.blocks} block(s), dModel ${o.dModel}, ${o.heads} heads, context ${o.context}, vocab ${o.vocab}; parameters per stage [${counts.map((c) => `${(c / 1e3).toFixed(0)}k`).join(', ')}] = ${(counts.reduce((a, b) => a + b, 0) / 1e6).toFixed(2)}M`);
  const perToken = (codecs ?? []).map((c) => c.bytesPerToken(o.dModel, 'act'));
  say(`[tessera] training: ${o.steps} steps × ${o.micro} micro-batches × ${o.batch} × ${o.context} = ${tokensPerStep} tokens/step, 1F1B (ideal bubble ${(100 * idealBubble(o.stages, o.micro)).toFixed(0)}%), AdamW lr ${o.lr} (warm-up ${o.warmup}, cosine), codec ${o.codec}${o.tail ? ` (last ${o.tail} boundaries none)` : ''}${codecs ? ` = [${perToken.map((b) => b.toFixed(1)).join(', ')}] bytes/token vs ${4 * o.dModel}` : ''}${link ? `, links ${o.linkText}` : ''}`);
  say(`[tessera] output: ${out}`);

  // ---- outputs ----
  const csvPath = join(out, 'loss.csv');
  writeFileSync(csvPath, 'step,train_loss,val_loss,val_bpb,tokens,seconds,bytes\n');
  const trainPts: Array<[number, number]> = [];
  const valPts: Array<[number, number]> = [];
  const writeChart = () => {
    const svg = lineChartSvg({
      title: `Tessera: ${o.stages}-stage GPT on Brown (dModel ${o.dModel}, vocab ${o.vocab}, codec ${o.codec})`,
      xLabel: 'optimizer step',
      yLabel: 'cross-entropy (nats/token)',
      series: [
        { name: 'train loss', points: trainPts, color: '#4e79a7' },
        { name: 'validation loss', points: valPts, color: '#e15759', markers: true },
      ],
      hlines: [{ y: uni.entropy, label: `unigram entropy (${uni.entropy.toFixed(2)})`, color: '#59a14f' }],
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
    valLoss = await pipeline.evaluate(valMicro, o.batch, o.context);
    valBpb = bitsPerByte(valLoss * valTokens, valBytes);
    valPts.push([step, valLoss]);
    return valLoss;
  };
  const state = (step: number) => ({
    step, total: o.steps, loss: lastLoss, valLoss, valBpb, refused,
    tokensPerSecond: trainMs > 0 ? tokens / (trainMs / 1000) : undefined, bytes, elapsed: (performance.now() - t0) / 1000,
  });
  await evaluate(0);
  appendFileSync(csvPath, `0,,${fmtNum(valLoss)},${fmtNum(valBpb)},0,0.0,0\n`);
  bar.log(`step 0: val loss ${valLoss!.toFixed(4)} (${valBpb!.toFixed(3)} bpb)`);
  bar.update(state(0));
  let done = 0;
  for (let step = 1; step <= o.steps && !stop; step++) {
    adam.lr = learningRate(step - 1, o); // the engine reads opts.adam at each applyStep
    const micro = Array.from({ length: o.micro }, (_, m) => toMicro(sampler.step((step - 1) * o.micro + m)));
    let loss: number | undefined;
    try {
      const r = await pipeline.trainStep(micro, o.batch, o.context);
      trainMs += r.ms;
      tokens += r.tokens;
      bytes += r.bytes;
      loss = r.loss;
      lastLoss = loss;
      trainPts.push([step, loss]);
      recent.push(loss);
      if (recent.length > 10) recent.shift();
    } catch (e) {
      if (!(e instanceof NonFiniteGradientError || e instanceof NonFiniteTensorError)) throw e;
      refused++;
      bar.log(`step ${step}: refused (${(e as Error).message}); going on with the next batch`);
    }
    done = step;
    let evalNow = false;
    if (step % o.evalEvery === 0 || step === o.steps || stop) {
      await evaluate(step);
      evalNow = true;
    }
    const secs = (performance.now() - t0) / 1000;
    appendFileSync(csvPath, `${step},${fmtNum(loss)},${evalNow ? fmtNum(valLoss) : ''},${evalNow ? fmtNum(valBpb) : ''},${tokens},${secs.toFixed(1)},${bytes}\n`);
    if (evalNow) {
      writeChart();
      bar.log(`step ${step}: train loss ${loss === undefined ? '(refused)' : fmtNum(loss)}  val loss ${fmtNum(valLoss)} (${fmtNum(valBpb, 3)} bpb; unigram ${uniEntropyBpb.toFixed(3)})`);
    }
    bar.update(state(step), evalNow);
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
    device, software, model: cfg, stages: o.stages, blocksPerStage: o.blocks, microBatches: o.micro, batch: o.batch,
    steps: done, refused, lr: o.lr, warmup: o.warmup, codec: o.codec, k: subspace ? o.k : undefined, tail: o.tail, link: o.linkText ?? null,
    tokens, seconds: elapsed, trainSeconds: trainMs / 1000, tokensPerSecond: tokens / (trainMs / 1000), bytesOnWire: bytes,
    bytesPerTokenPerBoundary: codecs ? perToken : Array(o.stages - 1).fill(4 * o.dModel),
    finalTrainLoss: finalTrain, finalValLoss: valLoss, finalValBpb: valBpb,
    unigram: { entropyNats: uni.entropy, entropyBpb: uniEntropyBpb, valCrossEntropyBpb: uniValBpb },
    validation: { batches: valBatches.length, tokens: valTokens, bytes: valBytes },
  };
  writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  say(`[tessera] ${done} steps (${refused} refused) in ${formatDuration(elapsed)}: ${tokens} tokens at ${summary.tokensPerSecond.toFixed(0)} tokens/s (training time), ${formatBytes(bytes)} between stages`);
  say(`[tessera] final train loss ${fmtNum(finalTrain)} (mean of last ${recent.length} steps), validation loss ${fmtNum(valLoss)} = ${fmtNum(valBpb, 3)} bits/byte; unigram baseline ${uniEntropyBpb.toFixed(3)} bits/byte (entropy ${uni.entropy.toFixed(3)} nats/token)`);
  say(`[tessera] wrote ${csvPath}, ${join(out, 'loss.svg')}, ${join(out, 'summary.json')}`);
  for (const f of files) say(`[tessera] wrote ${f}`);
  pipeline.destroy();
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
    process.stderr.write(`[tessera] train failed: ${e instanceof Error ? (typed ? `${e.name}: ${e.message}` : (e.stack ?? e.message)) : String(e)}\n`);
    process.exit(1);
  },
);
