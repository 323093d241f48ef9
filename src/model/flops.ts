import { mlpWidth, type ModelConfig } from './config.ts';
import type { StageSpec } from './stages.ts';

/**
 * Floating-point operations of the model, counted from the shapes as the kernels compute them (a multiply-add
 * is 2 FLOPs; elementwise ops, LayerNorm and softmax are left out, as is usual: they are O(C) per token
 * against O(C²)). The backward pass costs twice the forward (gradients for inputs and for weights).
 */

/** Forward FLOPs of one block over a sequence of `seq` tokens. */
export function blockForwardFlops(cfg: ModelConfig, seq: number): number {
  const C = cfg.dModel;
  const H = mlpWidth(cfg);
  const linear = 2 * seq * (C * 3 * C + C * C + C * H + H * C);
  // Causal attention: position t scores t + 1 keys and mixes t + 1 values, 2·C FLOPs each.
  const attention = 2 * 2 * C * ((seq * (seq + 1)) / 2);
  return linear + attention;
}

/** Forward FLOPs of one stage over one sequence of `seq` tokens (embedding lookups are free; the head is a matmul). */
export function stageForwardFlops(cfg: ModelConfig, spec: StageSpec, seq: number): number {
  const blocks = (spec.endLayer - spec.firstLayer) * blockForwardFlops(cfg, seq);
  return blocks + (spec.hasHead ? 2 * seq * cfg.dModel * cfg.vocab : 0);
}

/**
 * Forward FLOPs of a stage over `t` new positions of a sequence that already holds `past` cached positions
 * (inference with a KV cache): the linear layers see t rows, position past + i attends over past + i + 1 keys,
 * and the head, on the last stage, projects `headRows` rows (1 when decoding: only the last position is sampled).
 * With past = 0 and headRows = t it is stageForwardFlops(cfg, spec, t).
 */
export function stageIncrementalFlops(
  cfg: ModelConfig,
  spec: StageSpec,
  t: number,
  past: number,
  headRows = 1,
): number {
  const C = cfg.dModel;
  const H = mlpWidth(cfg);
  const linear = 2 * t * (C * 3 * C + C * C + C * H + H * C);
  const attention = 2 * 2 * C * (t * past + (t * (t + 1)) / 2);
  const blocks = (spec.endLayer - spec.firstLayer) * (linear + attention);
  return blocks + (spec.hasHead ? 2 * headRows * cfg.dModel * cfg.vocab : 0);
}

/** Training FLOPs (forward + backward) of a stage for `batch` sequences of `seq` tokens. */
export function stageTrainingFlops(cfg: ModelConfig, spec: StageSpec, batch: number, seq: number): number {
  return 3 * batch * stageForwardFlops(cfg, spec, seq);
}

/** Training FLOPs per token of the whole model at sequence length `seq`. */
export function trainingFlopsPerToken(cfg: ModelConfig, seq = cfg.context): number {
  const whole: StageSpec = {
    index: 0,
    count: 1,
    firstLayer: 0,
    endLayer: cfg.layers,
    hasEmbedding: true,
    hasHead: true,
  };
  return stageTrainingFlops(cfg, whole, 1, seq) / seq;
}
