import { ArgumentError } from '../gpu/index.ts';
import type { ModelConfig } from './config.ts';

/** A stage: a contiguous range of blocks; stage 0 also owns the embeddings, the last the head and loss. */
export interface StageSpec {
  index: number;
  count: number;
  firstLayer: number;
  /** One past the last layer. */
  endLayer: number;
  hasEmbedding: boolean;
  hasHead: boolean;
}

/** Splits cfg.layers into `count` contiguous stages, earlier stages taking the remainder. */
export function splitStages(cfg: ModelConfig, count: number, layersPerStage?: number[]): StageSpec[] {
  if (!Number.isInteger(count) || count < 1)
    throw new ArgumentError(`stage count must be a positive integer, got ${count}`);
  const sizes =
    layersPerStage ??
    Array.from({ length: count }, (_, i) => Math.floor(cfg.layers / count) + (i < cfg.layers % count ? 1 : 0));
  if (
    sizes.length !== count ||
    sizes.some((s) => !Number.isInteger(s) || s < 0) ||
    sizes.reduce((a, b) => a + b, 0) !== cfg.layers
  ) {
    throw new ArgumentError(`stage layout [${sizes}] does not split ${cfg.layers} layers into ${count} stages`);
  }
  let first = 0;
  return sizes.map((s, index) => {
    const spec = {
      index,
      count,
      firstLayer: first,
      endLayer: first + s,
      hasEmbedding: index === 0,
      hasHead: index === count - 1,
    };
    first += s;
    return spec;
  });
}
