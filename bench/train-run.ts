/** One benchmark training run on the corpus, shared by bench/pipeline.ts and bench/vocab.ts. */
import type { CodecName } from '../src/compress/index.ts';
import type { Gpu } from '../src/gpu/index.ts';
import { formatDuration, ProgressBar } from '../src/train/progress.ts';
import { learningRate, TrainingRun, type Corpus, type RecipeOptions } from '../src/train/recipe.ts';

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

/** Trains a recipe for o.steps steps (evaluating 4 times on the way) and reports the validation loss. */
export async function trainAndEvaluate(
  gpu: Gpu,
  corpus: Corpus,
  name: string,
  o: RecipeOptions,
  staleness: number,
  correction: 'nesterov' | 'none',
  t0 = performance.now(),
): Promise<TrainRow> {
  const run = TrainingRun.create(gpu, o, corpus, { timeoutMs: 3_600_000 });
  const bar = new ProgressBar({ plainEvery: 25 });
  const started = performance.now();
  const evalEvery = Math.max(1, Math.floor(o.steps / 4));
  const curve: Array<[number, number]> = [];
  let done = 0;
  let loss: number | undefined;
  let val = await run.evaluate();
  curve.push([0, val.loss]);
  bar.log(`${name}`);
  while (done < o.steps) {
    const until = Math.min(o.steps, done + evalEvery);
    const from = done;
    const data = Array.from({ length: until - from }, (_, i) => run.microBatches(from + i));
    await run.pipeline.trainAsync(data, o.batch, o.context, {
      staleness,
      correction,
      lr: (k) => learningRate(from + k, o),
      onStep: (r) => {
        loss = r.loss;
        bar.update({
          step: from + r.step + 1,
          total: o.steps,
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
  const bpt = run.bytesPerToken[0] ?? 4 * o.dModel; // one stage: nothing crosses a boundary
  const row: TrainRow = {
    name,
    codec: o.codec,
    k: o.codec.startsWith('subspace') ? o.k : undefined,
    staleness,
    correction: staleness ? correction : undefined,
    lr: o.lr,
    bytesPerToken: bpt,
    compression: (4 * o.dModel) / bpt,
    steps: o.steps,
    tokens: o.steps * run.tokensPerStep,
    valLoss: val.loss,
    valBpb: val.bpb,
    unigramBpb: run.validation.unigramBpb,
    curve,
    seconds: (performance.now() - started) / 1000,
  };
  say(
    `${name}: val loss ${val.loss.toFixed(4)} (${val.bpb.toFixed(3)} bpb) after ${o.steps} steps, ` +
      `${bpt.toFixed(1)} B/token (${row.compression.toFixed(1)}×) [${formatDuration((performance.now() - t0) / 1000)}]`,
  );
  run.destroy();
  return row;
}
