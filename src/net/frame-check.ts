/**
 * Checks a decoded frame against the receiver's assignment before any byte of it reaches the GPU: a frame
 * that decodes cleanly can still come from the wrong peer, for the wrong step, or with a payload the codec
 * would misread.
 */
import { boundaryOf, FRAME_KIND_SPECS, senderStage, type FrameKindSpec } from '../train/frame-kinds.ts';
import { FrameError, type Frame } from '../train/transport.ts';

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

type Refuse = (why: string) => never;

/**
 * Throws FrameError with the first reason the frame is unacceptable. What each kind must look like is read off
 * its entry in FRAME_KIND_SPECS (src/train/frame-kinds.ts): who sends it, what its micro names, its body.
 * Routing follows the pipeline engine: micro-batch m is handled by replica m mod R(stage) of every stage, so an
 * act/grad frame for m must come from replica m mod R(sender) and reach replica m mod R(self).
 */
export function checkFrame(frame: Frame, expect: FrameExpectation): void {
  const { stages, replicas } = expect;
  const refuse: Refuse = (why) => {
    throw new FrameError(
      `${frame.kind} frame step ${frame.step} micro ${frame.micro} from stage ${frame.fromStage} replica ` +
        `${frame.fromReplica}: ${why}`,
    );
  };
  if (frame.model !== expect.model)
    refuse(`model ${JSON.stringify(frame.model)}, expected ${JSON.stringify(expect.model)}`);
  if (frame.fromStage >= stages) refuse(`no stage ${frame.fromStage} in a ${stages}-stage pipeline`);
  if (frame.fromReplica >= (replicas[frame.fromStage] ?? 0))
    refuse(`stage ${frame.fromStage} has ${replicas[frame.fromStage] ?? 0} replicas`);
  if (frame.step < expect.minStep || frame.step > expect.maxStep)
    refuse(`step outside the window [${expect.minStep}, ${expect.maxStep}]`);
  const spec = FRAME_KIND_SPECS[frame.kind];
  checkSender(frame, spec, expect, refuse);
  checkMicro(frame, spec, expect, refuse);
  checkBody(frame, spec, expect, refuse);
  if (frame.ids && expect.vocab !== undefined) {
    const v = expect.vocab;
    for (let i = 0; i < frame.ids.length; i++)
      if (frame.ids[i] < 0 || frame.ids[i] >= v) refuse(`token id ${frame.ids[i]} at ${i} outside [0, ${v})`);
  }
}

/** The sending stage the kind names relative to the receiver (another replica of its own, for gradsync). */
function checkSender(frame: Frame, spec: FrameKindSpec, expect: FrameExpectation, refuse: Refuse): void {
  const { self } = expect;
  if (spec.from === 'own stage') {
    if (frame.fromStage !== self.stage || frame.fromReplica === self.replica)
      refuse(`${frame.kind} must come from another replica of stage ${self.stage}`);
    return;
  }
  const from = senderStage(frame.kind, self.stage);
  if (from !== undefined && frame.fromStage !== from)
    refuse(`${frame.kind} must come from stage ${from} (receiver is stage ${self.stage})`);
}

/** What micro names: a micro-batch (routed to its replica, or to a sibling for an audit), or the sender. */
function checkMicro(frame: Frame, spec: FrameKindSpec, expect: FrameExpectation, refuse: Refuse): void {
  const { self, replicas } = expect;
  const { kind, micro } = frame;
  if (spec.micro === 'sending replica') {
    if (micro !== frame.fromReplica) refuse(`${kind} micro must equal the sending replica`);
    return;
  }
  if (spec.micro === 'sending stage') {
    if (micro !== frame.fromStage) refuse(`${kind} micro must equal the sending stage`);
    return;
  }
  if (expect.microBatches !== undefined && micro >= expect.microBatches)
    refuse(`micro-batch beyond ${expect.microBatches - 1}`);
  const owner = micro % replicas[self.stage];
  // An audit copy goes to a sibling of the micro-batch's replica, never to the replica itself.
  if (spec.reaches === 'sibling' && owner === self.replica)
    refuse(`micro-batch ${micro} is this replica's own: it cannot audit it`);
  if (spec.reaches === 'owner' && owner !== self.replica)
    refuse(`micro-batch ${micro} belongs to replica ${owner}, not ${self.replica}`);
  const sender = micro % replicas[frame.fromStage];
  if (frame.fromReplica !== sender) refuse(`micro-batch ${micro} is sent by replica ${sender}`);
}

/** Shape, codec, payload length and token ids, by the kind's body. */
function checkBody(frame: Frame, spec: FrameKindSpec, expect: FrameExpectation, refuse: Refuse): void {
  const { kind } = frame;
  const [r, c] = frame.shape;
  const bytes = frame.payload.byteLength;
  switch (spec.body) {
    case 'tensor': {
      if (r !== expect.rows || c !== expect.width)
        refuse(`shape [${r}, ${c}], expected [${expect.rows}, ${expect.width}]`);
      const codec = expect.codecs[boundaryOf(kind, expect.self.stage)];
      if (frame.codec !== codec) refuse(`codec ${frame.codec}, boundary uses ${codec}`);
      const bad = payloadMismatch(codec, bytes, r, c);
      if (bad) refuse(bad);
      if (frame.ids && frame.ids.length !== r) refuse(`${frame.ids.length} token ids for ${r} rows`);
      break;
    }
    case 'f32 list':
      if (r !== 1 || frame.codec !== 'none')
        refuse(`${kind} must be shape [1, n] with codec none, got [${r}, ${c}] ${frame.codec}`);
      if (bytes !== 4 * c) refuse(`payload of ${bytes} bytes for ${c} float32: not a shape [1, n] float32 list`);
      if (spec.length === 'stage parameters' && expect.stageParams !== undefined && c !== expect.stageParams)
        refuse(`${c} gradient values, stage has ${expect.stageParams} parameters`);
      if (spec.length === 'micro-batches' && expect.microBatches !== undefined && c > expect.microBatches)
        refuse(`${kind} names ${c} micro-batches of ${expect.microBatches}`);
      break;
    case 'f64 scalar':
      if (r !== 1 || c !== 1 || frame.codec !== 'f64' || bytes !== 8)
        refuse(
          `${kind} must be one float64 (shape [1, 1], codec f64, 8 bytes), got [${r}, ${c}] ${frame.codec} ` +
            `${bytes} bytes`,
        );
      break;
  }
  if (spec.body !== 'tensor' && frame.ids) refuse(`${kind} carries no token ids`);
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
