/**
 * A run's frame limits: frameLimitsFor (the frame codec's rule) fed from the RunSpec's derived values, so every
 * peer of a model caps frames the same way.
 */
import { stageCount, stageSpecs } from '../train/run-derived.ts';
import type { RunSpec } from '../train/run-spec.ts';
import { frameLimitsFor, type FrameLimits } from './frame-codec.ts';

/** `own`: the receiver's stage index (its gradsync frames come only from its replicas); absent: any stage. */
export function frameLimits(spec: RunSpec, own?: number): FrameLimits {
  const stages = stageCount(spec);
  return frameLimitsFor(spec.model, spec.batch, stages, own === undefined ? undefined : stageSpecs(spec)[own]);
}
