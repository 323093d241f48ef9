/**
 * A training recipe: everything a corpus run sets up around the pipeline engine from a RunSpec — boundary
 * codecs and the subspace constraint, the pipeline over an (optionally shaped) in-memory network, the
 * deterministic train sampler, fixed validation batches, the unigram baseline and the learning-rate schedule.
 * `npm run train`, `npm run bench:pipeline` and the tests build runs from it, so they train the same way.
 * Browser-safe: token streams and the tokenizer come from the caller.
 */
import {
  boundaryCodecs,
  isSubspaceCodec,
  makeBasis,
  stageNeedsSubspace,
  subspaceInit,
  subspaceProject,
  type Codec,
  type SubspaceBasis,
} from '../compress/index.ts';
import { BatchSampler, validationBatches, type Batch } from '../data/batches.ts';
import type { Corpus } from '../data/corpus.ts';
import { bitsPerByte } from '../data/tokenizer.ts';
import type { Gpu } from '../gpu/index.ts';
import type { ModelConfig } from '../model/config.ts';
import { stageParamSpecs } from '../model/params.ts';
import type { Stage } from '../model/stage.ts';
import type { AdamWConfig } from '../ops/adamw.ts';
import { InMemoryNetwork, type LinkShape } from './memory-transport.ts';
import { boundaryPlan, codecParams, stageCount, tokensPerStep } from './run-derived.ts';
import { validateRunSpec, type RunSpec } from './run-spec.ts';

export type { Corpus } from '../data/corpus.ts';
import { Pipeline, type MicroBatchData } from './pipeline.ts';

/** Validation batches a run evaluates on when the caller names no count. */
export const DEFAULT_EVAL_BATCHES = 8;

/** Linear warm-up to the peak, then cosine decay to 10% of it at the last step. */
export function learningRate(step: number, run: Pick<RunSpec, 'optim'>): number {
  const o = run.optim;
  if (step < o.warmup) return (o.lr * (step + 1)) / o.warmup;
  const t = o.steps <= o.warmup + 1 ? 1 : (step - o.warmup) / (o.steps - o.warmup - 1);
  return o.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, t))));
}

/** The unigram baseline: entropy of the train split's token distribution, and its cross-entropy on `targets`. */
export function unigram(train: Int32Array, vocab: number, targets: Int32Array[]): { entropy: number; valNats: number } {
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

const toMicro = (b: Batch): MicroBatchData => ({ ids: b.ids, targets: b.targets });

/** The optimiser at step 0 (the schedule moves `lr` from there). */
export function recipeAdam(s: RunSpec): AdamWConfig {
  return { lr: learningRate(0, s), beta1: 0.9, beta2: s.optim.beta2, eps: 1e-8, weightDecay: s.optim.weightDecay };
}

/**
 * The boundary codecs of a run and, for subspace codecs, the shared basis and which stages keep their writes in
 * span(U).
 */
export interface Boundaries {
  codecs?: Codec[];
  basis?: SubspaceBasis;
  /** Per stage: whether its residual writes must stay in span(U). */
  needs: boolean[];
  /** Re-projects a constrained stage after each update (subspace codecs are exact only while writes stay in U). */
  afterStep?: (stage: Stage) => void;
  /** Projects a freshly initialised stage. */
  init(stage: Stage): void;
}

export function recipeBoundaries(gpu: Gpu, spec: RunSpec): Boundaries {
  const stages = stageCount(spec);
  const codec = spec.codec.name;
  const plan = boundaryPlan(spec);
  const params = codecParams(spec);
  const codecs = codec === 'none' ? undefined : boundaryCodecs(stages, plan, params);
  const needs = Array.from({ length: stages }, (_, s) => codec !== 'none' && stageNeedsSubspace(s, stages, plan));
  const basis = isSubspaceCodec(codec) ? makeBasis(params) : undefined;
  return {
    codecs,
    basis,
    needs,
    afterStep: basis
      ? (stage: Stage) => {
          if (needs[stage.spec.index]) subspaceProject(gpu, stage, basis);
        }
      : undefined,
    init: (stage: Stage) => {
      if (basis && needs[stage.spec.index]) subspaceInit(gpu, stage, basis);
    },
  };
}

/** The micro-batches of optimizer step `step` (0-based): reproducible by any peer from the seed. */
export function recipeMicroBatches(sampler: BatchSampler, run: RunSpec, step: number): MicroBatchData[] {
  const micro = run.microBatches;
  return Array.from({ length: micro }, (_, m) => toMicro(sampler.step(step * micro + m)));
}

export interface Validation {
  micro: MicroBatchData[];
  tokens: number;
  /** UTF-8 bytes the validation targets decode to (bits per byte divide by these). */
  bytes: number;
  /** Unigram entropy in nats/token and in bits/byte over the validation bytes. */
  unigramNats: number;
  unigramBpb: number;
  /** The unigram model's cross-entropy on the validation batches, in bits/byte. */
  unigramValBpb: number;
}

/** Where a run's boundaries travel and how it is evaluated: local choices, not part of the RunSpec. */
export interface RunOptions {
  timeoutMs?: number;
  /** Shape of the in-memory links between stages (default: instant). */
  link?: LinkShape;
  /** Fixed validation batches (default DEFAULT_EVAL_BATCHES). */
  evalBatches?: number;
}

/** A ready-to-train run built from a RunSpec. */
export class TrainingRun {
  readonly spec: RunSpec;
  readonly cfg: ModelConfig;
  readonly pipeline: Pipeline;
  readonly network: InMemoryNetwork;
  readonly sampler: BatchSampler;
  readonly validation: Validation;
  readonly codecs?: Codec[];
  readonly basis?: SubspaceBasis;
  /** The live optimiser settings: the engine reads them at each update; lr follows the schedule. */
  readonly adam: AdamWConfig;

  private constructor(
    spec: RunSpec,
    pipeline: Pipeline,
    network: InMemoryNetwork,
    sampler: BatchSampler,
    validation: Validation,
    adam: AdamWConfig,
    codecs?: Codec[],
    basis?: SubspaceBasis,
  ) {
    this.spec = spec;
    this.cfg = spec.model;
    this.pipeline = pipeline;
    this.network = network;
    this.sampler = sampler;
    this.validation = validation;
    this.adam = adam;
    this.codecs = codecs;
    this.basis = basis;
  }

  /** `run` is validated here (against this device's limits too), so a bad field fails before any GPU work. */
  static create(gpu: Gpu, run: RunSpec, corpus: Corpus, opts: RunOptions = {}): TrainingRun {
    const spec = validateRunSpec(run, { limits: gpu.limits });
    const { link } = opts;
    const evalBatches = opts.evalBatches ?? DEFAULT_EVAL_BATCHES;
    const { batch } = spec;
    const { context, vocab } = spec.model;
    const sampler = new BatchSampler(corpus.train, { seed: spec.seed, batchSize: batch, seq: context });
    const valBatches = validationBatches(corpus.val, { batchSize: batch, seq: context, maxBatches: evalBatches });
    const tokens = valBatches.length * batch * context;
    const bytes = valBatches.reduce((a, b) => a + corpus.tokenizer.countBytes(b.targets), 0);
    const uni = unigram(
      corpus.train,
      vocab,
      valBatches.map((b) => b.targets),
    );
    const validation: Validation = {
      micro: valBatches.map(toMicro),
      tokens,
      bytes,
      unigramNats: uni.entropy,
      unigramBpb: bitsPerByte(uni.entropy * tokens, bytes),
      unigramValBpb: bitsPerByte(uni.valNats, bytes),
    };
    const adam = recipeAdam(spec);
    const b = recipeBoundaries(gpu, spec);
    const network = new InMemoryNetwork(link ? () => link : undefined);
    const pipeline = Pipeline.create(gpu, {
      model: spec.model,
      stages: stageCount(spec),
      layersPerStage: spec.layout,
      adam,
      codecs: b.codecs,
      network,
      modelName: 'brown',
      clipNorm: spec.optim.clip > 0 ? spec.optim.clip : undefined,
      timeoutMs: opts.timeoutMs,
      afterStep: b.afterStep,
    });
    for (const ws of pipeline.workers) for (const w of ws) b.init(w.stage);
    return new TrainingRun(spec, pipeline, network, sampler, validation, adam, b.codecs, b.basis);
  }

  /** The micro-batches of optimizer step `step` (0-based): reproducible by any peer from the seed. */
  microBatches(step: number): MicroBatchData[] {
    return recipeMicroBatches(this.sampler, this.spec, step);
  }

  get tokensPerStep(): number {
    return tokensPerStep(this.spec);
  }

  /** Parameters per stage. */
  get paramCounts(): number[] {
    return this.pipeline.stages.map((s) =>
      stageParamSpecs(this.cfg, s.spec).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0),
    );
  }

  /** Activation bytes per token crossing each boundary (forward; gradients cost the same backward). */
  get bytesPerToken(): number[] {
    const width = this.cfg.dModel;
    return Array.from(
      { length: stageCount(this.spec) - 1 },
      (_, b) => this.codecs?.[b].bytesPerToken(width, 'act') ?? 4 * width,
    );
  }

  /** Validation loss (nats/token) and bits per byte on the fixed validation batches. */
  async evaluate(): Promise<{ loss: number; bpb: number }> {
    const loss = await this.pipeline.evaluate(this.validation.micro, this.spec.batch, this.cfg.context);
    return { loss, bpb: bitsPerByte(loss * this.validation.tokens, this.validation.bytes) };
  }

  destroy(): void {
    this.pipeline.destroy();
  }
}
