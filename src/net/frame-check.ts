/**
 * Checks a decoded frame against the receiver's assignment before any byte of it reaches the GPU: a frame
 * that decodes cleanly can still come from the wrong peer, for the wrong step, or with a payload the codec
 * would misread.
 */
import type { Frame } from '../train/transport.ts';
import { FrameError } from './frame-codec.ts';

export interface FrameExpectation {
  model: string;
  /** Stages of the pipeline. */
  stages: number;
  /** Replica count of each stage (length = stages). */
  replicas: number[];
  /** The receiver. */
  self: { stage: number; replica: number };
  /** Rows (batch·context) and width (dModel) of a boundary tensor. */
  rows: number;
  width: number;
  /** Codec name per boundary: codecs[b] joins stage b and b+1 (length = stages − 1). */
  codecs: string[];
  /** Window of steps the receiver accepts (inclusive). */
  minStep: number;
  maxStep: number;
  /** Micro-batches per step: when given, act/grad micro must be below it. */
  microBatches?: number;
  /** Parameter count of the receiver's stage: when given, gradsync frames must carry exactly that many values. */
  stageParams?: number;
  /** Vocabulary size: when given, every token id must lie in [0, vocab). */
  vocab?: number;
}

/**
 * Throws FrameError with the first reason the frame is unacceptable.
 * Routing follows the pipeline engine (src/train/pipeline.ts): micro-batch m is handled by replica
 * m mod R(stage) of every stage, so an act/grad frame for m must come from replica m mod R(sender) and reach
 * replica m mod R(self). gradsync: micro = the sending replica; norm: micro = the sending stage, one float64 (codec f64).
 */
export function checkFrame(frame: Frame, expect: FrameExpectation): void {
  const { self, stages, replicas } = expect;
  const refuse = (why: string): never => {
    throw new FrameError(
      `${frame.kind} frame step ${frame.step} micro ${frame.micro} from stage ${frame.fromStage} replica ${frame.fromReplica}: ${why}`,
    );
  };
  if (frame.model !== expect.model)
    refuse(`model ${JSON.stringify(frame.model)}, expected ${JSON.stringify(expect.model)}`);
  if (frame.fromStage >= stages) refuse(`no stage ${frame.fromStage} in a ${stages}-stage pipeline`);
  if (frame.fromReplica >= (replicas[frame.fromStage] ?? 0))
    refuse(`stage ${frame.fromStage} has ${replicas[frame.fromStage] ?? 0} replicas`);
  if (frame.step < expect.minStep || frame.step > expect.maxStep)
    refuse(`step outside the window [${expect.minStep}, ${expect.maxStep}]`);
  const [r, c] = frame.shape;
  const bytes = frame.payload.byteLength;
  switch (frame.kind) {
    case 'act':
    case 'audit':
    case 'grad': {
      const from = frame.kind === 'grad' ? self.stage + 1 : self.stage - 1;
      if (frame.fromStage !== from)
        refuse(`${frame.kind} must come from stage ${from} (receiver is stage ${self.stage})`);
      if (expect.microBatches !== undefined && frame.micro >= expect.microBatches)
        refuse(`micro-batch beyond ${expect.microBatches - 1}`);
      const owner = frame.micro % replicas[self.stage];
      // An audit copy goes to a sibling of the micro-batch's replica, never to the replica itself.
      if (frame.kind === 'audit' ? owner === self.replica : owner !== self.replica) {
        refuse(
          frame.kind === 'audit'
            ? `micro-batch ${frame.micro} is this replica's own: it cannot audit it`
            : `micro-batch ${frame.micro} belongs to replica ${owner}, not ${self.replica}`,
        );
      }
      if (frame.fromReplica !== frame.micro % replicas[from])
        refuse(`micro-batch ${frame.micro} is sent by replica ${frame.micro % replicas[from]}`);
      if (r !== expect.rows || c !== expect.width)
        refuse(`shape [${r}, ${c}], expected [${expect.rows}, ${expect.width}]`);
      const codec = expect.codecs[frame.kind === 'grad' ? self.stage : self.stage - 1];
      if (frame.codec !== codec) refuse(`codec ${frame.codec}, boundary uses ${codec}`);
      const bad = payloadMismatch(codec, bytes, r, c);
      if (bad) refuse(bad);
      if (frame.ids && frame.ids.length !== r) refuse(`${frame.ids.length} token ids for ${r} rows`);
      break;
    }
    case 'gradsync':
      if (frame.fromStage !== self.stage || frame.fromReplica === self.replica)
        refuse(`gradsync must come from another replica of stage ${self.stage}`);
      if (frame.micro !== frame.fromReplica) refuse(`gradsync micro must equal the sending replica`);
      if (r !== 1 || frame.codec !== 'none')
        refuse(`gradsync must be shape [1, n] with codec none, got [${r}, ${c}] ${frame.codec}`);
      if (expect.stageParams !== undefined && c !== expect.stageParams)
        refuse(`${c} gradient values, stage has ${expect.stageParams} parameters`);
      if (bytes !== 4 * c) refuse(`payload of ${bytes} bytes for ${c} float32`);
      if (frame.ids) refuse('gradsync carries no token ids');
      break;
    case 'auditlist':
      if (frame.fromStage !== self.stage - 1) refuse(`auditlist must come from stage ${self.stage - 1}`);
      if (frame.micro !== frame.fromReplica) refuse('auditlist micro must equal the sending replica');
      if (r !== 1 || frame.codec !== 'none' || bytes !== 4 * c)
        refuse(
          `auditlist must be shape [1, n] float32 with codec none, got [${r}, ${c}] ${frame.codec} ${bytes} bytes`,
        );
      if (expect.microBatches !== undefined && c > expect.microBatches)
        refuse(`auditlist names ${c} micro-batches of ${expect.microBatches}`);
      if (frame.ids) refuse('auditlist carries no token ids');
      break;
    case 'norm':
      if (frame.micro !== frame.fromStage) refuse('norm micro must equal the sending stage');
      if (r !== 1 || c !== 1 || frame.codec !== 'f64' || bytes !== 8)
        refuse(
          `norm must be one float64 (shape [1, 1], codec f64, 8 bytes), got [${r}, ${c}] ${frame.codec} ${bytes} bytes`,
        );
      if (frame.ids) refuse('norm carries no token ids');
      break;
  }
  if (frame.ids && expect.vocab !== undefined) {
    const v = expect.vocab;
    for (let i = 0; i < frame.ids.length; i++)
      if (frame.ids[i] < 0 || frame.ids[i] >= v) refuse(`token id ${frame.ids[i]} at ${i} outside [0, ${v})`);
  }
}

/**
 * The payload length each codec produces (src/compress/codecs.ts): exact for none and int8; for the subspace
 * codecs the rank k is not in the frame, so the length must fit some k in [1, width]. Unknown codecs: no check
 * here (the codec's own decode refuses a wrong length).
 */
function payloadMismatch(codec: string, bytes: number, rows: number, width: number): string | undefined {
  const perRow = bytes / rows;
  const ok = (() => {
    switch (codec) {
      case 'none':
        return bytes === rows * width * 4;
      case 'int8':
        return bytes === rows * (4 + width);
      case 'subspace':
        return Number.isInteger(perRow / 4) && perRow >= 4 && perRow <= 4 * width;
      case 'subspace+int8':
        return Number.isInteger(perRow) && perRow >= 5 && perRow <= 4 + width;
      default:
        return true;
    }
  })();
  return ok ? undefined : `payload of ${bytes} bytes does not fit codec ${codec} for shape [${rows}, ${width}]`;
}
