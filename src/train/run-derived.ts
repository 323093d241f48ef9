/**
 * Every value derived from a RunSpec, computed here only: stage ranges and their cost, the subspace dimension,
 * the codec parameters, tokens per step. The coordinator, the workers, the CLI and the app all ask this module
 * rather than repeating the arithmetic (frame limits: src/net/run-limits.ts, which needs the frame codec).
 */
import type { BoundaryPlan } from '../compress/subspace-model.ts';
import { stageTrainingFlops } from '../model/flops.ts';
import { splitStages, type StageSpec } from '../model/stages.ts';
import type { RunSpec } from './run-spec.ts';

/** The subspace dimension a width gets when the spec names none: a quarter of it, at least 1. */
export function defaultSubspaceK(dModel: number): number {
  return Math.max(1, Math.floor(dModel / 4));
}

export function subspaceK(spec: Pick<RunSpec, 'codec' | 'model'>): number {
  return spec.codec.k ?? defaultSubspaceK(spec.model.dModel);
}

export function stageCount(spec: Pick<RunSpec, 'layout'>): number {
  return spec.layout.length;
}

/** The stages' layer ranges (stage 0 holds the embeddings, the last the head). */
export function stageSpecs(spec: Pick<RunSpec, 'model' | 'layout'>): StageSpec[] {
  return splitStages(spec.model, spec.layout.length, spec.layout);
}

/** A stage with the training FLOPs (forward + backward) one token costs it at full context. */
export interface StageCost extends StageSpec {
  flopsPerToken: number;
}

export function stageCosts(spec: Pick<RunSpec, 'model' | 'layout'>): StageCost[] {
  const cfg = spec.model;
  return stageSpecs(spec).map((s) => ({
    ...s,
    flopsPerToken: stageTrainingFlops(cfg, s, 1, cfg.context) / cfg.context,
  }));
}

/** Tokens one optimizer step trains: micro-batches × sequences × context. */
export function tokensPerStep(spec: Pick<RunSpec, 'microBatches' | 'batch' | 'model'>): number {
  return spec.microBatches * spec.batch * spec.model.context;
}

/** What the boundary codecs are built from (the subspace basis is a function of these). */
export function codecParams(spec: RunSpec): { seed: number; k: number; vocab: number; width: number } {
  return { seed: spec.seed, k: subspaceK(spec), vocab: spec.model.vocab, width: spec.model.dModel };
}

export function boundaryPlan(spec: Pick<RunSpec, 'codec'>): BoundaryPlan {
  return { codec: spec.codec.name, uncompressedTail: spec.codec.tail };
}
