import { randomBytes } from 'node:crypto';
import { CODEC_NAMES, type CodecName } from '../compress/codecs.ts';
import type { ModelConfig } from '../model/config.ts';
import { stageCosts } from '../train/run-derived.ts';
import { MAX_STAGES, presetSpec, validateRunSpec, type RunSpec } from '../train/run-spec.ts';
import type { AssignModel } from './assignment.ts';
import { HttpError } from './errors.ts';
import type { ModelRecord } from './types.ts';
import { finite, integer, MODEL_ID, object, onlyKeys, string } from './validate.ts';

/**
 * The workload a peer times to report `tokensPerSecond` (src/train/throughput.ts): training that model as one
 * stage at full context. Capacities in tokens/s of a real stage scale from it by FLOPs per token.
 */
export { REFERENCE_CONFIG, REFERENCE_FLOPS_PER_TOKEN } from '../train/throughput.ts';

export function toAssignModel(model: ModelRecord): AssignModel {
  return { id: model.id, stageCosts: stageCosts(model.spec).map((s) => s.flopsPerToken) };
}

/** The fields of the first registration API, before a body could carry a whole RunSpec. */
export interface FlatModelFields {
  config: ModelConfig;
  layout: number[];
  codec: string;
  microBatches: number;
  batch: number;
  pricePer1kTokens: number;
}

/**
 * The RunSpec a flat registration (or a model stored before specs) describes: what it names, and the software
 * preset's optimiser and schedule. The seed is the config's, else 1 — what workers sampled batches with.
 */
export function specFromFlat(f: FlatModelFields): RunSpec {
  const preset = presetSpec(true);
  return {
    model: f.config,
    layout: f.layout,
    codec: { name: f.codec as CodecName, tail: 0 },
    microBatches: f.microBatches,
    batch: f.batch,
    optim: preset.optim,
    data: preset.data,
    seed: f.config.seed ?? 1,
    pricePer1kTokens: f.pricePer1kTokens,
    snapshotEvery: preset.snapshotEvery,
  };
}

const FLAT_FIELDS = ['config', 'layout', 'codec', 'microBatches', 'batch', 'pricePer1kTokens'];
const CONFIG_FIELDS = ['vocab', 'dModel', 'heads', 'layers', 'context', 'mlpRatio', 'seed'];

/** The flat fields' JSON types; what they mean together is validateRunSpec's to judge. */
function parseFlat(o: Record<string, unknown>): FlatModelFields {
  const c = object(o.config, 'config');
  onlyKeys(c, 'config', CONFIG_FIELDS);
  const config: ModelConfig = {
    vocab: integer(c.vocab, 'config.vocab', 1, 1 << 24),
    dModel: integer(c.dModel, 'config.dModel', 1, 1 << 16),
    heads: integer(c.heads, 'config.heads', 1, 1 << 10),
    layers: integer(c.layers, 'config.layers', 1, 4096),
    context: integer(c.context, 'config.context', 1, 1 << 20),
  };
  if (c.mlpRatio !== undefined) config.mlpRatio = integer(c.mlpRatio, 'config.mlpRatio', 1, 64);
  if (c.seed !== undefined) config.seed = integer(c.seed, 'config.seed', 0, 2 ** 32 - 1);
  if (!Array.isArray(o.layout) || o.layout.length < 1 || o.layout.length > MAX_STAGES)
    throw new HttpError('badRequest', `layout must be an array of 1 to ${MAX_STAGES} layer counts (one per stage)`);
  const layout = o.layout.map((n, i) => integer(n, `layout[${i}]`, 0, config.layers));
  const codec = string(o.codec, 'codec');
  if (!(CODEC_NAMES as readonly string[]).includes(codec))
    throw new HttpError('badRequest', `codec must be one of ${CODEC_NAMES.join(', ')}, got ${JSON.stringify(codec)}`);
  return {
    config,
    layout,
    codec,
    microBatches: integer(o.microBatches, 'microBatches', 1, 4096),
    batch: integer(o.batch, 'batch', 1, 1 << 16),
    pricePer1kTokens: finite(o.pricePer1kTokens, 'pricePer1kTokens', 0),
  };
}

/**
 * Validates a registration body (POST /api/models) into the record to store: `{ id?, name, spec }`, or the
 * flat fields (specFromFlat). `id` is made from the name when absent.
 */
export function parseModelInput(body: unknown, at: number): ModelRecord {
  const o = object(body, 'model');
  const withSpec = o.spec !== undefined;
  onlyKeys(o, 'model', ['id', 'name', ...(withSpec ? ['spec'] : FLAT_FIELDS)]);
  const name = string(o.name, 'name', undefined, 100);
  const candidate = withSpec ? o.spec : specFromFlat(parseFlat(o));
  let spec: RunSpec;
  try {
    spec = validateRunSpec(candidate, withSpec ? { path: 'spec' } : {});
  } catch (e) {
    throw new HttpError('badRequest', (e as Error).message);
  }
  const id = o.id === undefined ? slug(name) : string(o.id, 'id', MODEL_ID, 64);
  return { id, name, spec, createdAt: at };
}

function slug(name: string): string {
  const base =
    name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 48) || 'model';
  return `${base}-${randomBytes(3).toString('hex')}`;
}
