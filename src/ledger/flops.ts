/**
 * The FLOPs a receipt may claim, from the shapes alone (src/model/flops.ts counts them as the kernels compute
 * them): a train unit is one micro-batch's forward and backward on the stage, an audit its forward only. The
 * coordinator recomputes this for the stage the peer was assigned and refuses any other number.
 */
import type { ModelConfig } from '../model/config.ts';
import { stageForwardFlops, stageTrainingFlops } from '../model/flops.ts';
import type { StageSpec } from '../model/stages.ts';
import type { WorkContext, WorkDone } from '../train/work.ts';
import type { ReceiptKind, WorkReceipt } from './receipt.ts';

export function receiptFlops(cfg: ModelConfig, spec: StageSpec, batch: number, seq: number, kind: ReceiptKind): number {
  return kind === 'train' ? stageTrainingFlops(cfg, spec, batch, seq) : batch * stageForwardFlops(cfg, spec, seq);
}

export interface ReceiptContext extends WorkContext {
  peerId: string;
}

export function receiptFor(w: WorkDone, c: ReceiptContext): WorkReceipt {
  return {
    model: c.model,
    round: c.round,
    stage: c.spec.index,
    replica: c.replica,
    replicas: c.replicas,
    step: w.step,
    micro: w.micro,
    kind: w.kind,
    flops: receiptFlops(c.cfg, c.spec, c.batch, c.seq, w.kind),
    inputHash: w.inputHash,
    outputHash: w.outputHash,
    peerId: c.peerId,
  };
}
