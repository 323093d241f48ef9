/** One benchmark training run on the corpus, shared by bench/pipeline.ts and bench/vocab.ts. */
import type { CodecName } from '../src/compress/index.ts';
import type { Gpu } from '../src/gpu/index.ts';
import { formatDuration, ProgressBar } from '../src/train/progress.ts';
import { learningRate, TrainingRun, type Corpus } from '../src/train/recipe.ts';
import { subspaceK } from '../src/train/run-derived.ts';
import { defaultWarmup, type RunSpec } from '../src/train/run-spec.ts';

const say = (s: string) => console.log(`[bench] ${s}`);

export interface TrainRow {
  name: string;
  codec: CodecName;
  k?: number;
  staleness: number;
  correction?: string;
  lr: number;
  bytesPerToken: number;
  compression: number;
  steps: number;
  tokens: number;
  valLoss: number;
  valBpb: number;
  unigramBpb: number;
  curve: Array<[number, number]>;
  seconds: number;
}

/** The spec over `stages` equal stages (its layers must divide evenly). */
export function withStages(spec: RunSpec, stages: number): RunSpec {
  const blocks = spec.model.layers / stages;
  if (!Number.isInteger(blocks))
    throw new Error(`${spec.model.layers} layers do not split into ${stages} equal stages`);
  return { ...spec, layout: Array.from({ length: stages }, () => blocks) };
}

/** The spec on a schedule of `steps` steps, with the warm-up such a schedule gets by default. */
export function withSteps(spec: RunSpec, steps: number): RunSpec {
  return { ...spec, optim: { ...spec.optim, steps, warmup: defaultWarmup(steps) } };
}

/** Trains a spec for its optim.steps steps (evaluating 4 times on the way) and reports the validation loss. */
export async function trainAndEvaluate(
  gpu: Gpu,
  corpus: Corpus,
  name: string,
  spec: RunSpec,
  staleness: number,
  correction: 'nesterov' | 'none',
  t0 = performance.now(),
): Promise<TrainRow> {
  const run = TrainingRun.create(gpu, spec, corpus, { timeoutMs: 3_600_000 });
  const { steps, lr } = spec.optim;
  const { context, dModel } = spec.model;
  const codec = spec.codec.name;
  const bar = new ProgressBar({ plainEvery: 25 });
  const started = performance.now();
  const evalEvery = Math.max(1, Math.floor(steps / 4));
  const curve: Array<[number, number]> = [];
  let done = 0;
  let loss: number | undefined;
  let val = await run.evaluate();
  curve.push([0, val.loss]);
  bar.log(`${name}`);
  while (done < steps) {
    const until = Math.min(steps, done + evalEvery);
    const from = done;
    const data = Array.from({ length: until - from }, (_, i) => run.microBatches(from + i));
    await run.pipeline.trainAsync(data, spec.batch, context, {
      staleness,
      correction,
      lr: (k) => learningRate(from + k, spec),
      onStep: (r) => {
        loss = r.loss;
        bar.update({
          step: from + r.step + 1,
          total: steps,
          loss,
          valLoss: val.loss,
          valBpb: val.bpb,
          elapsed: (performance.now() - started) / 1000,
        });
      },
    });
    done = until;
    val = await run.evaluate();
    curve.push([done, val.loss]);
  }
  bar.done();
  const bpt = run.bytesPerToken[0] ?? 4 * dModel; // one stage: nothing crosses a boundary
  const row: TrainRow = {
    name,
    codec,
    k: codec.startsWith('subspace') ? subspaceK(spec) : undefined,
    staleness,
    correction: staleness ? correction : undefined,
    lr,
    bytesPerToken: bpt,
    compression: (4 * dModel) / bpt,
    steps,
    tokens: steps * run.tokensPerStep,
    valLoss: val.loss,
    valBpb: val.bpb,
    unigramBpb: run.validation.unigramBpb,
    curve,
    seconds: (performance.now() - started) / 1000,
  };
  say(
    `${name}: val loss ${val.loss.toFixed(4)} (${val.bpb.toFixed(3)} bpb) after ${steps} steps, ` +
      `${bpt.toFixed(1)} B/token (${row.compression.toFixed(1)}×) [${formatDuration((performance.now() - t0) / 1000)}]`,
  );
  run.destroy();
  return row;
}
