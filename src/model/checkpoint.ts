import { TesseraGpuError, type Gpu } from '../gpu/index.ts';
import { validateConfig, type ModelConfig } from './config.ts';
import { stageParamSpecs } from './params.ts';
import {
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  type NamedTensor,
  type ParsedSafetensors,
} from './safetensors.ts';
import { Stage } from './stage.ts';
import type { StageSpec } from './stages.ts';

/**
 * Stage checkpoints: one safetensors file per stage holding every parameter `<name>`, its AdamW moments
 * `m.<name>` and `v.<name>` (all F32), and in the metadata the model config, the stage spec, the optimizer step
 * and the format version (serializeSafetensors adds the SHA-256 of the data section). This is what a peer hands
 * to another one; the receiver checks everything before a single buffer is allocated, so a bad file leaves the
 * receiver exactly as it was. Gradient accumulators and in-flight activations are not part of a checkpoint.
 */
export const CHECKPOINT_FORMAT = 'tessera-stage';
export const CHECKPOINT_VERSION = 1;

export type CheckpointProblem =
  | 'corrupt' // not a parseable safetensors file
  | 'hash' // content hash missing or not matching the data
  | 'format' // not a Tessera stage checkpoint, or another format version
  | 'config' // model config malformed or not the expected one
  | 'spec' // stage spec malformed or not the expected one
  | 'missing' // an expected tensor is absent
  | 'extra' // a tensor the stage does not have
  | 'shape'
  | 'dtype'
  | 'nonfinite'; // NaN/Inf in a parameter or moment (or a negative second moment)

/** A checkpoint was refused; `problem` says which check failed, the message names the tensor or field. */
export class CheckpointError extends TesseraGpuError {
  readonly problem: CheckpointProblem;
  constructor(problem: CheckpointProblem, message: string) {
    super('checkpoint', `checkpoint rejected (${problem}): ${message}`);
    this.problem = problem;
  }
}

export interface StageCheckpoint {
  cfg: ModelConfig;
  spec: StageSpec;
  step: number;
  params: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

/** Serialises the stage's parameters and AdamW state (reads them back from the GPU). */
export async function saveStage(stage: Stage): Promise<Uint8Array> {
  const tensors = new Map<string, NamedTensor>();
  const moments: Array<[string, NamedTensor]> = [];
  for (const [name, slot] of stage.slots) {
    const shape = [...slot.spec.shape];
    tensors.set(name, { shape, data: await stage.gpu.readF32(slot.param) });
    moments.push([`m.${name}`, { shape, data: await stage.gpu.readF32(slot.m) }]);
  }
  for (const [name, slot] of stage.slots)
    moments.push([`v.${name}`, { shape: [...slot.spec.shape], data: await stage.gpu.readF32(slot.v) }]);
  for (const [k, t] of moments) tensors.set(k, t);
  return serializeSafetensors(tensors, {
    format: CHECKPOINT_FORMAT,
    format_version: String(CHECKPOINT_VERSION),
    model_config: JSON.stringify(canonicalConfig(stage.cfg)),
    stage_spec: JSON.stringify(canonicalSpec(stage.spec)),
    optimizer_step: String(stage.step),
  });
}

/** Config with defaults filled in and keys in a fixed order, so equal models compare equal. */
function canonicalConfig(c: ModelConfig): Required<ModelConfig> {
  return {
    vocab: c.vocab,
    dModel: c.dModel,
    heads: c.heads,
    layers: c.layers,
    context: c.context,
    mlpRatio: c.mlpRatio ?? 4,
    seed: c.seed ?? 0,
  };
}

function canonicalSpec(s: StageSpec): StageSpec {
  return {
    index: s.index,
    count: s.count,
    firstLayer: s.firstLayer,
    endLayer: s.endLayer,
    hasEmbedding: s.hasEmbedding,
    hasHead: s.hasHead,
  };
}

function parseJson(problem: 'config' | 'spec', text: string | undefined): Record<string, unknown> {
  if (text === undefined)
    throw new CheckpointError(problem, `metadata has no ${problem === 'config' ? 'model_config' : 'stage_spec'}`);
  try {
    const v = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new CheckpointError(
    problem,
    `${problem === 'config' ? 'model_config' : 'stage_spec'} is not a JSON object: ${text.slice(0, 80)}`,
  );
}

function readConfig(meta: Record<string, string>): ModelConfig {
  const raw = parseJson('config', meta.model_config);
  const cfg = {} as Record<string, number>;
  for (const k of ['vocab', 'dModel', 'heads', 'layers', 'context', 'mlpRatio', 'seed'] as const) {
    const v = raw[k];
    if (v === undefined && (k === 'mlpRatio' || k === 'seed')) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new CheckpointError('config', `model_config.${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    cfg[k] = v;
  }
  const config = cfg as unknown as ModelConfig;
  try {
    validateConfig(config);
  } catch (e) {
    throw new CheckpointError('config', (e as Error).message);
  }
  if (config.mlpRatio !== undefined && config.mlpRatio < 1)
    throw new CheckpointError('config', `model_config.mlpRatio must be ≥ 1, got ${config.mlpRatio}`);
  return config;
}

function readSpec(meta: Record<string, string>, cfg: ModelConfig): StageSpec {
  const raw = parseJson('spec', meta.stage_spec);
  const ints = {} as Record<string, number>;
  for (const k of ['index', 'count', 'firstLayer', 'endLayer'] as const) {
    const v = raw[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new CheckpointError('spec', `stage_spec.${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    ints[k] = v;
  }
  for (const k of ['hasEmbedding', 'hasHead'] as const) {
    if (typeof raw[k] !== 'boolean')
      throw new CheckpointError('spec', `stage_spec.${k} must be a boolean, got ${JSON.stringify(raw[k])}`);
  }
  const spec: StageSpec = {
    index: ints.index,
    count: ints.count,
    firstLayer: ints.firstLayer,
    endLayer: ints.endLayer,
    hasEmbedding: raw.hasEmbedding as boolean,
    hasHead: raw.hasHead as boolean,
  };
  const why =
    spec.count < 1 || spec.index >= spec.count
      ? `index ${spec.index} is not within ${spec.count} stages`
      : spec.firstLayer > spec.endLayer || spec.endLayer > cfg.layers
        ? `layers [${spec.firstLayer}, ${spec.endLayer}) are not within the model's ${cfg.layers}`
        : spec.hasEmbedding !== (spec.index === 0)
          ? `hasEmbedding must be ${spec.index === 0} for stage ${spec.index}`
          : spec.hasHead !== (spec.index === spec.count - 1)
            ? `hasHead must be ${spec.index === spec.count - 1} for stage ${spec.index} of ${spec.count}`
            : '';
  if (why) throw new CheckpointError('spec', `stage_spec: ${why}`);
  return spec;
}

function describeDiff(a: object, b: object): string {
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return Object.keys(ra)
    .filter((k) => ra[k] !== rb[k])
    .map((k) => `${k} ${JSON.stringify(ra[k])} (expected ${JSON.stringify(rb[k])})`)
    .join(', ');
}

/**
 * Parses and checks a stage checkpoint without touching a GPU: hash, format, config/spec (against `expect`
 * when given), then every tensor — present, F32, the right shape, finite — and nothing extra.
 */
export async function readCheckpoint(
  bytes: Uint8Array,
  expect?: { cfg?: ModelConfig; spec?: StageSpec },
): Promise<StageCheckpoint> {
  let parsed: ParsedSafetensors;
  try {
    parsed = await parseSafetensors(bytes);
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw e;
    throw new CheckpointError(/content hash/.test(e.message) ? 'hash' : 'corrupt', e.message);
  }
  const meta = parsed.metadata;
  if (typeof meta.sha256 !== 'string')
    throw new CheckpointError('hash', 'the file carries no content hash (metadata sha256)');
  if (meta.format !== CHECKPOINT_FORMAT)
    throw new CheckpointError(
      'format',
      `metadata format is ${JSON.stringify(meta.format)}, expected "${CHECKPOINT_FORMAT}"`,
    );
  if (meta.format_version !== String(CHECKPOINT_VERSION)) {
    throw new CheckpointError(
      'format',
      `format_version ${JSON.stringify(meta.format_version)} is not supported (this reader: ${CHECKPOINT_VERSION})`,
    );
  }
  const cfg = readConfig(meta);
  if (expect?.cfg) {
    const diff = describeDiff(canonicalConfig(cfg), canonicalConfig(expect.cfg));
    if (diff) throw new CheckpointError('config', `model config differs: ${diff}`);
  }
  const spec = readSpec(meta, cfg);
  if (expect?.spec) {
    const diff = describeDiff(canonicalSpec(spec), canonicalSpec(expect.spec));
    if (diff) throw new CheckpointError('spec', `stage spec differs: ${diff}`);
  }
  const stepText = meta.optimizer_step;
  const step = Number(stepText);
  if (stepText === undefined || !/^\d+$/.test(stepText) || !Number.isSafeInteger(step)) {
    throw new CheckpointError(
      'format',
      `optimizer_step must be a non-negative integer, got ${JSON.stringify(stepText)}`,
    );
  }

  const specs = stageParamSpecs(cfg, spec);
  const expected = new Map<string, number[]>();
  for (const ps of specs) for (const prefix of ['', 'm.', 'v.']) expected.set(prefix + ps.name, ps.shape);
  for (const name of parsed.tensors.keys()) {
    if (!expected.has(name))
      throw new CheckpointError(
        'extra',
        `tensor ${name} does not belong to stage ${spec.index} (layers ${spec.firstLayer}–${spec.endLayer - 1})`,
      );
  }
  const out: StageCheckpoint = { cfg, spec, step, params: new Map(), m: new Map(), v: new Map() };
  for (const [name, shape] of expected) {
    const t = parsed.tensors.get(name);
    if (!t) throw new CheckpointError('missing', `tensor ${name} [${shape}] is missing`);
    if (!(t.data instanceof Float32Array))
      throw new CheckpointError('dtype', `tensor ${name} is ${dtypeName(t.data)}, expected F32`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError('shape', `tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    const isV = name.startsWith('v.');
    for (let i = 0; i < t.data.length; i++) {
      const x = t.data[i];
      if (!Number.isFinite(x) || (isV && x < 0))
        throw new CheckpointError('nonfinite', `tensor ${name} element ${i} is ${x}`);
    }
    const target = name.startsWith('m.') ? out.m : isV ? out.v : out.params;
    target.set(isV || name.startsWith('m.') ? name.slice(2) : name, t.data);
  }
  return out;
}

function dtypeName(a: ArrayBufferView): string {
  return a instanceof Float64Array
    ? 'F64'
    : a instanceof Int32Array
      ? 'I32'
      : a instanceof Uint32Array
        ? 'U32'
        : a.constructor.name;
}

/**
 * Rebuilds a stage from a checkpoint: everything is checked first (readCheckpoint), then the stage is created
 * with the saved weights, its AdamW moments written and its step set, so it continues training exactly where
 * the saved one stood. `expect` (the receiver's own view of the run) must match the file's config and spec.
 */
export async function loadStage(
  gpu: Gpu,
  bytes: Uint8Array,
  expect?: { cfg?: ModelConfig; spec?: StageSpec },
): Promise<Stage> {
  const ck = await readCheckpoint(bytes, expect);
  const stage = Stage.create(gpu, expect?.cfg ?? ck.cfg, ck.spec, ck.params);
  for (const [name, slot] of stage.slots) {
    gpu.write(slot.m, ck.m.get(name)!);
    gpu.write(slot.v, ck.v.get(name)!);
  }
  stage.step = ck.step;
  return stage;
}
