import { randomBytes } from 'node:crypto';
import { CODEC_NAMES } from '../compress/codecs.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import { stageTrainingFlops } from '../model/flops.ts';
import { splitStages, type StageSpec } from '../model/stages.ts';
import type { AssignModel } from './assignment.ts';
import { HttpError } from './errors.ts';
import type { ModelRecord } from './types.ts';
import { finite, integer, MODEL_ID, object, onlyKeys, string } from './validate.ts';

/** A stage of a registered model and the training FLOPs one token costs it (forward + backward). */
export interface StageInfo extends StageSpec {
  flopsPerToken: number;
}

/**
 * The workload a peer times to report `tokensPerSecond` (src/train/throughput.ts): training that model as one
 * stage at full context. Capacities in tokens/s of a real stage scale from it by FLOPs per token.
 */
export { REFERENCE_CONFIG, REFERENCE_FLOPS_PER_TOKEN } from '../train/throughput.ts';

/** Stages of a model with their cost per token at full context. */
export function stagesOf(model: Pick<ModelRecord, 'config' | 'layout'>): StageInfo[] {
  const cfg = model.config;
  return splitStages(cfg, model.layout.length, model.layout).map((spec) => ({
    ...spec,
    flopsPerToken: stageTrainingFlops(cfg, spec, 1, cfg.context) / cfg.context,
  }));
}

export function toAssignModel(model: ModelRecord): AssignModel {
  return { id: model.id, stageCosts: stagesOf(model).map((s) => s.flopsPerToken) };
}

const MODEL_FIELDS = ['id', 'name', 'config', 'layout', 'codec', 'microBatches', 'batch', 'pricePer1kTokens'];
const CONFIG_FIELDS = ['vocab', 'dModel', 'heads', 'layers', 'context', 'mlpRatio', 'seed'];
const MAX_STAGES = 256;

function parseConfig(v: unknown): ModelConfig {
  const o = object(v, 'config');
  onlyKeys(o, 'config', CONFIG_FIELDS);
  const cfg: ModelConfig = {
    vocab: integer(o.vocab, 'config.vocab', 1, 1 << 24),
    dModel: integer(o.dModel, 'config.dModel', 1, 1 << 16),
    heads: integer(o.heads, 'config.heads', 1, 1 << 10),
    layers: integer(o.layers, 'config.layers', 1, 4096),
    context: integer(o.context, 'config.context', 1, 1 << 20),
  };
  if (o.mlpRatio !== undefined) cfg.mlpRatio = integer(o.mlpRatio, 'config.mlpRatio', 1, 64);
  if (o.seed !== undefined) cfg.seed = integer(o.seed, 'config.seed', 0, 2 ** 32 - 1);
  try {
    validateConfig(cfg);
  } catch (e) {
    throw new HttpError('badRequest', (e as Error).message);
  }
  return cfg;
}

function parseLayout(v: unknown, cfg: ModelConfig): number[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_STAGES) {
    throw new HttpError('badRequest', `layout must be an array of 1 to ${MAX_STAGES} layer counts (one per stage)`);
  }
  const layout = v.map((n, i) => integer(n, `layout[${i}]`, 0, cfg.layers));
  let stages: StageInfo[];
  try {
    stages = stagesOf({ config: cfg, layout });
  } catch (e) {
    throw new HttpError('badRequest', (e as Error).message);
  }
  const idle = stages.find((s) => !(s.flopsPerToken > 0));
  if (idle)
    throw new HttpError(
      'badRequest',
      `layout [${layout}]: stage ${idle.index} has no layers and no head, so no work for its peers`,
    );
  return layout;
}

/** Validates a registration body (POST /api/models) into the record to store; `id` is made from the name when absent. */
export function parseModelInput(body: unknown, at: number): ModelRecord {
  const o = object(body, 'model');
  onlyKeys(o, 'model', MODEL_FIELDS);
  const name = string(o.name, 'name', undefined, 100);
  const config = parseConfig(o.config);
  const layout = parseLayout(o.layout, config);
  const codec = string(o.codec, 'codec');
  if (!(CODEC_NAMES as readonly string[]).includes(codec))
    throw new HttpError('badRequest', `codec must be one of ${CODEC_NAMES.join(', ')}, got ${JSON.stringify(codec)}`);
  const id = o.id === undefined ? slug(name) : string(o.id, 'id', MODEL_ID, 64);
  return {
    id,
    name,
    config,
    layout,
    codec,
    microBatches: integer(o.microBatches, 'microBatches', 1, 4096),
    batch: integer(o.batch, 'batch', 1, 1 << 16),
    pricePer1kTokens: finite(o.pricePer1kTokens, 'pricePer1kTokens', 0),
    createdAt: at,
  };
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
