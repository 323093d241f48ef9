import { ArgumentError, LimitError } from '../gpu/index.ts';
import { MAX_HEAD_DIM } from '../ops/attention.ts';

/** A GPT-2 style decoder (pre-LayerNorm blocks of causal attention + GELU MLP), as in tests/fixtures/golden. */
export interface ModelConfig {
  vocab: number;
  dModel: number;
  heads: number;
  layers: number;
  /** Maximum sequence length (rows of wpe). */
  context: number;
  /** MLP hidden width = mlpRatio·dModel (GPT-2: 4). */
  mlpRatio?: number;
  /** Seed of the deterministic initialisation. */
  seed?: number;
}

export function mlpWidth(cfg: ModelConfig): number {
  return (cfg.mlpRatio ?? 4) * cfg.dModel;
}

/** Throws a clear error when the config is malformed or cannot run within the device's limits. */
export function validateConfig(cfg: ModelConfig, limits?: { maxStorageBufferBindingSize: number }): void {
  for (const k of ['vocab', 'dModel', 'heads', 'layers', 'context'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 1)
      throw new ArgumentError(`model config: ${k} must be a positive integer, got ${cfg[k]}`);
  }
  if (cfg.dModel % cfg.heads !== 0)
    throw new ArgumentError(`model config: dModel ${cfg.dModel} is not divisible by heads ${cfg.heads}`);
  if (cfg.dModel / cfg.heads > MAX_HEAD_DIM)
    throw new LimitError(`model config: head dim ${cfg.dModel / cfg.heads} exceeds the kernels' ${MAX_HEAD_DIM}`);
  if (limits) {
    const biggest = 4 * Math.max(cfg.vocab * cfg.dModel, cfg.dModel * mlpWidth(cfg), cfg.context * cfg.dModel);
    if (biggest > limits.maxStorageBufferBindingSize) {
      throw new LimitError(
        `model config: a ${biggest}-byte weight exceeds this device's ` +
          `${limits.maxStorageBufferBindingSize}-byte storage binding`,
      );
    }
  }
}
