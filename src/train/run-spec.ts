/**
 * RunSpec: the one serialisable description of a model and how it trains — architecture, stage layout, boundary
 * codec, batch shape, optimiser and schedule, data, seed and price. Plain JSON: the coordinator stores it, an
 * assignment carries it to every peer, the CLI and benches build one, the presets are JSON files. It is
 * validated here and only here (validateRunSpec); everything derived from it comes from run-derived.ts.
 */
import { CODEC_NAMES, type CodecName } from '../compress/codecs.ts';
import { ArgumentError } from '../gpu/index.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import { splitStages } from '../model/stages.ts';
import { stageTrainingFlops } from '../model/flops.ts';
import gpuPreset from './presets/gpu.json' with { type: 'json' };
import softwarePreset from './presets/software.json' with { type: 'json' };

export interface CodecSpec {
  name: CodecName;
  /** Subspace dimension; absent: derived from the width (subspaceK in run-derived.ts). */
  k?: number;
  /** Boundaries before the head left uncompressed. */
  tail: number;
}

export interface OptimSpec {
  /** Peak learning rate (linear warm-up over `warmup` steps, then cosine to 10% at `steps`). */
  lr: number;
  warmup: number;
  steps: number;
  weightDecay: number;
  beta2: number;
  /** Global gradient-norm clip (0 = off). */
  clip: number;
}

export const CORPORA = ['brown'] as const;
/** Where the tokens come from; the tokenizer has `model.vocab` tokens, so the vocabulary is not repeated here. */
export interface DataSpec {
  corpus: (typeof CORPORA)[number];
}

export interface RunSpec {
  /** The architecture; `model.seed` seeds the initial weights (0 when absent, as in Stage.create). */
  model: ModelConfig;
  /** Layers per stage; its length is the stage count and its sum `model.layers`. */
  layout: number[];
  codec: CodecSpec;
  /** Micro-batches per optimizer step. */
  microBatches: number;
  /** Sequences per micro-batch. */
  batch: number;
  optim: OptimSpec;
  data: DataSpec;
  /** Seeds the batch sampler and the subspace basis. */
  seed: number;
  /** What inference costs a requester, in ETH per 1,000 tokens. */
  pricePer1kTokens: number;
  /**
   * Every stage holder writes its stage to durable storage after each step that is a multiple of this (the same
   * steps on every stage, so they form consistent resume points: src/net/snapshots.ts).
   */
  snapshotEvery: number;
}

/** snapshotEvery of a stored spec written before the field existed. */
export const DEFAULT_SNAPSHOT_EVERY = 10;

/** A RunSpec field that is missing, of the wrong type or out of range; the message names the field. */
export class RunSpecError extends ArgumentError {}

export const MAX_STAGES = 256;

type Json = Record<string, unknown>;

const show = (v: unknown): string => {
  const s = typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? 'an array' : v === null ? 'null' : String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

function object(v: unknown, path: string, allowed: readonly string[]): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new RunSpecError(`${path} must be a JSON object, got ${show(v)}`);
  const extra = Object.keys(v).filter((k) => !allowed.includes(k));
  if (extra.length > 0)
    throw new RunSpecError(`${path}: unknown field${extra.length > 1 ? 's' : ''} ${extra.join(', ')}`);
  return v as Json;
}

function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new RunSpecError(`${path} must be an integer in [${min}, ${max}], got ${show(v)}`);
  return v;
}

/** A finite number in [min, max] (max exclusive when `below`). */
function num(v: unknown, path: string, min: number, max = Infinity, below = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (below && v === max))
    throw new RunSpecError(`${path} must be a finite number in [${min}, ${max}${below ? ')' : ']'}, got ${show(v)}`);
  return v;
}

const MODEL_FIELDS = ['vocab', 'dModel', 'heads', 'layers', 'context', 'mlpRatio', 'seed'];

function parseModel(v: unknown, path: string, limits?: { maxStorageBufferBindingSize: number }): ModelConfig {
  const o = object(v, path, MODEL_FIELDS);
  const cfg: ModelConfig = {
    vocab: int(o.vocab, `${path}.vocab`, 1, 1 << 24),
    dModel: int(o.dModel, `${path}.dModel`, 1, 1 << 16),
    heads: int(o.heads, `${path}.heads`, 1, 1 << 10),
    layers: int(o.layers, `${path}.layers`, 1, 4096),
    context: int(o.context, `${path}.context`, 1, 1 << 20),
  };
  if (o.mlpRatio !== undefined) cfg.mlpRatio = int(o.mlpRatio, `${path}.mlpRatio`, 1, 64);
  if (o.seed !== undefined) cfg.seed = int(o.seed, `${path}.seed`, 0, 2 ** 32 - 1);
  validateConfig(cfg, limits);
  return cfg;
}

function parseLayout(v: unknown, path: string, cfg: ModelConfig): number[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_STAGES)
    throw new RunSpecError(`${path} must be an array of 1 to ${MAX_STAGES} layer counts (one per stage)`);
  const layout = v.map((n, i) => int(n, `${path}[${i}]`, 0, cfg.layers));
  // splitStages names the mismatch ("does not split N layers into S stages").
  const stages = splitStages(cfg, layout.length, layout);
  const idle = stages.find((s) => !(stageTrainingFlops(cfg, s, 1, cfg.context) > 0));
  if (idle)
    throw new RunSpecError(
      `${path} [${layout}]: stage ${idle.index} has no layers and no head, so no work for its peers`,
    );
  return layout;
}

function parseCodec(v: unknown, path: string, cfg: ModelConfig): CodecSpec {
  const o = object(v, path, ['name', 'k', 'tail']);
  if (typeof o.name !== 'string' || !(CODEC_NAMES as readonly string[]).includes(o.name))
    throw new RunSpecError(`${path}.name must be one of ${CODEC_NAMES.join(', ')}, got ${show(o.name)}`);
  const codec: CodecSpec = { name: o.name as CodecName, tail: int(o.tail ?? 0, `${path}.tail`, 0, 4096) };
  if (o.k !== undefined) codec.k = int(o.k, `${path}.k`, 1, cfg.dModel);
  return codec;
}

function parseOptim(v: unknown, path: string): OptimSpec {
  const o = object(v, path, ['lr', 'warmup', 'steps', 'weightDecay', 'beta2', 'clip']);
  return {
    lr: num(o.lr, `${path}.lr`, 0, 10),
    warmup: int(o.warmup, `${path}.warmup`, 0, 1e9),
    steps: int(o.steps, `${path}.steps`, 1, 1e9),
    weightDecay: num(o.weightDecay, `${path}.weightDecay`, 0, 10),
    beta2: num(o.beta2, `${path}.beta2`, 0, 1, true),
    clip: num(o.clip, `${path}.clip`, 0),
  };
}

function parseData(v: unknown, path: string): DataSpec {
  const o = object(v, path, ['corpus']);
  if (typeof o.corpus !== 'string' || !(CORPORA as readonly string[]).includes(o.corpus))
    throw new RunSpecError(`${path}.corpus must be one of ${CORPORA.join(', ')}, got ${show(o.corpus)}`);
  return { corpus: o.corpus as DataSpec['corpus'] };
}

const SPEC_FIELDS = [
  'model',
  'layout',
  'codec',
  'microBatches',
  'batch',
  'optim',
  'data',
  'seed',
  'pricePer1kTokens',
  'snapshotEvery',
];

/**
 * Checks untrusted JSON (a request body, a stored row, a preset) and returns a fresh RunSpec holding only its
 * known fields, or throws a RunSpecError / the config's ArgumentError or LimitError naming the field (`path`
 * prefixes the names, e.g. 'spec'). `limits`: also check the weights fit this device's storage bindings.
 */
export function validateRunSpec(
  v: unknown,
  opts: { path?: string; limits?: { maxStorageBufferBindingSize: number } } = {},
): RunSpec {
  const p = opts.path ? `${opts.path}.` : '';
  const o = object(v, opts.path ?? 'run spec', SPEC_FIELDS);
  const model = parseModel(o.model, `${p}model`, opts.limits);
  return {
    model,
    layout: parseLayout(o.layout, `${p}layout`, model),
    codec: parseCodec(o.codec, `${p}codec`, model),
    microBatches: int(o.microBatches, `${p}microBatches`, 1, 4096),
    batch: int(o.batch, `${p}batch`, 1, 1 << 16),
    optim: parseOptim(o.optim, `${p}optim`),
    data: parseData(o.data, `${p}data`),
    seed: int(o.seed, `${p}seed`, 0, 2 ** 32 - 1),
    pricePer1kTokens: num(o.pricePer1kTokens, `${p}pricePer1kTokens`, 0),
    snapshotEvery: int(o.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY, `${p}snapshotEvery`, 1, 1e6),
  };
}

const PRESETS = {
  software: validateRunSpec(softwarePreset, { path: 'presets/software.json' }),
  gpu: validateRunSpec(gpuPreset, { path: 'presets/gpu.json' }),
};

/**
 * The preset for a device (a copy, safe to change): a software adapter trains a small model that learns within
 * minutes. The software vocabulary is bench:vocab's choice (best validation bits/byte at equal training FLOPs);
 * the GPU preset has not been measured (no GPU was available) and keeps 2048.
 */
export function presetSpec(software: boolean): RunSpec {
  return structuredClone(software ? PRESETS.software : PRESETS.gpu);
}

/**
 * A small model on the software preset's optimiser, uncompressed and free to use: what the swarm tests and the
 * inference bench run across worker processes. Its layers are the layout's sum; `seed` seeds both the weights and
 * the sampler; `model` overrides the architecture (vocabulary 1024, width 32, 2 heads, context 32).
 */
export function smallSpec(
  shape: { layout: number[]; microBatches: number; batch: number; seed: number },
  model: Partial<ModelConfig> = {},
): RunSpec {
  const layers = shape.layout.reduce((a, b) => a + b, 0);
  return {
    ...presetSpec(true),
    model: { vocab: 1024, dModel: 32, heads: 2, layers, context: 32, seed: shape.seed, ...model },
    codec: { name: 'none', tail: 0 },
    pricePer1kTokens: 0,
    ...shape,
  };
}

/**
 * The warm-up a schedule of `steps` gets when none is given: a tenth of it, at most 100 steps (the presets
 * follow this rule).
 */
export function defaultWarmup(steps: number): number {
  return Math.min(100, Math.ceil(steps / 10));
}
