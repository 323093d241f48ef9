/**
 * What a proposed RunSpec implies, shown beside the form as it is edited. The arithmetic is run-derived.ts's;
 * this only picks and labels it.
 */
import { isSubspaceCodec } from '../../compress/codecs.ts';
import { stageCosts, subspaceK, tokensPerStep } from '../../train/run-derived.ts';
import type { RunSpec } from '../../train/run-spec.ts';

export interface StageFact {
  index: number;
  /** "layers 1–2 + embedding" */
  label: string;
  flopsPerToken: number;
  /** Training FLOPs the stage does per optimizer step (its share of every token of the step). */
  flopsPerStep: number;
}

export interface ProposalFacts {
  stages: StageFact[];
  tokensPerStep: number;
  /** Tokens the whole schedule trains (steps × tokens per step). */
  tokensTotal: number;
  /** The subspace dimension in effect, for subspace codecs. */
  k?: number;
}

function stageLabel(s: { firstLayer: number; endLayer: number; hasEmbedding: boolean; hasHead: boolean }): string {
  const n = s.endLayer - s.firstLayer;
  const layers =
    n === 0 ? 'no layers' : n === 1 ? `layer ${s.firstLayer + 1}` : `layers ${s.firstLayer + 1}–${s.endLayer}`;
  const extra = [s.hasEmbedding && 'embedding', s.hasHead && 'head'].filter(Boolean).join(' + ');
  return extra ? `${layers} + ${extra}` : layers;
}

export function proposalFacts(spec: RunSpec): ProposalFacts {
  const tokens = tokensPerStep(spec);
  return {
    stages: stageCosts(spec).map((s) => ({
      index: s.index,
      label: stageLabel(s),
      flopsPerToken: s.flopsPerToken,
      flopsPerStep: s.flopsPerToken * tokens,
    })),
    tokensPerStep: tokens,
    tokensTotal: tokens * spec.optim.steps,
    ...(isSubspaceCodec(spec.codec.name) ? { k: subspaceK(spec) } : {}),
  };
}
