/**
 * Every kind of frame stage workers exchange, in one table: who sends it to whom, what its `micro` field names,
 * what its body is and which part of the stage runner consumes it. The receiver's checks (src/net/frame-check.ts),
 * the wire limits (src/net/frame-codec.ts) and the runner's decoding (frame-body.ts) are all read off this
 * table, so a new kind is one entry here plus its handler in the runner.
 */

export const FRAME_KINDS = ['act', 'grad', 'gradsync', 'norm', 'audit', 'auditlist'] as const;
export type FrameKind = (typeof FRAME_KINDS)[number];

/**
 * What a frame's body is, which fixes its shape, codec and token ids:
 * - tensor: a boundary tensor [batch·context, dModel] in the codec of the boundary it crosses, with the token
 *   ids of its micro-batch (codecs rebuild from them; the last stage computes its loss with them);
 * - f32 list: shape [1, n], n raw little-endian float32, codec 'none', no ids;
 * - f64 scalar: shape [1, 1], one little-endian float64, codec 'f64', no ids.
 */
export type FrameBody = 'tensor' | 'f32 list' | 'f64 scalar';

export interface FrameKindSpec {
  /** What the frame carries, in words. */
  carries: string;
  /** The sending stage, relative to the receiving stage s: s − 1, s + 1, s itself (another replica), or any. */
  from: 'previous stage' | 'next stage' | 'own stage' | 'any stage';
  /** What the `micro` field names (frames are addressed by (step, micro, kind)). */
  micro: 'micro-batch' | 'sending replica' | 'sending stage';
  /**
   * For micro-batch frames: the replica of the receiving stage it goes to. Micro-batch m belongs to replica
   * m mod R of every stage; 'owner' is that replica, 'sibling' any other (an audit copy).
   */
  reaches?: 'owner' | 'sibling';
  body: FrameBody;
  /** For tensors: the direction the boundary codec encodes it for. */
  travels?: 'act' | 'grad';
  /**
   * For lists: how many values it holds — exactly the stage's parameter count, or at most a step's micro-batches (maybe
   * none).
   */
  length?: 'stage parameters' | 'micro-batches';
  /** What consumes it in the stage runner (stage-run.ts / stage-update.ts). */
  handler: string;
}

export const FRAME_KIND_SPECS: Record<FrameKind, FrameKindSpec> = {
  act: {
    carries: 'the activations of a micro-batch, forward across a boundary',
    from: 'previous stage',
    micro: 'micro-batch',
    reaches: 'owner',
    body: 'tensor',
    travels: 'act',
    handler: 'StageRun.forward: the input of the forward of micro-batch m',
  },
  grad: {
    carries: 'the gradient of those activations, backward across the same boundary',
    from: 'next stage',
    micro: 'micro-batch',
    reaches: 'owner',
    body: 'tensor',
    travels: 'grad',
    handler: 'StageRun.backward: the output gradient of micro-batch m',
  },
  gradsync: {
    carries: "a replica's gradients of the step, flattened (the all-reduce within a stage)",
    from: 'own stage',
    micro: 'sending replica',
    body: 'f32 list',
    length: 'stage parameters',
    handler: 'StageUpdate.allReduce: summed in replica order before the update',
  },
  norm: {
    carries: "a stage's squared gradient norm (global clipping; replica 0 of every stage sends it to the others)",
    from: 'any stage',
    micro: 'sending stage',
    body: 'f64 scalar',
    handler: 'StageUpdate.receiveNorms: summed in stage order into the global norm',
  },
  audit: {
    carries: 'a copy of an act frame sent to a sibling of its receiver, which recomputes the forward to check it',
    from: 'previous stage',
    micro: 'micro-batch',
    reaches: 'sibling',
    body: 'tensor',
    travels: 'act',
    handler: 'StageRun.audit: the input of a recomputed forward, before the update',
  },
  auditlist: {
    carries: 'the micro-batches a sending replica duplicated to this replica in a step (float32 ids, maybe none)',
    from: 'previous stage',
    micro: 'sending replica',
    body: 'f32 list',
    length: 'micro-batches',
    handler: 'StageRun.audit: which audit frames to wait for',
  },
};

/** The stage that sends a `kind` frame to stage `s`, or undefined where any may ('any stage'). */
export function senderStage(kind: FrameKind, s: number): number | undefined {
  const from = FRAME_KIND_SPECS[kind].from;
  return from === 'previous stage' ? s - 1 : from === 'next stage' ? s + 1 : from === 'own stage' ? s : undefined;
}

/** The boundary a tensor frame received at stage `s` crossed (boundary b joins stages b and b + 1). */
export function boundaryOf(kind: FrameKind, s: number): number {
  return FRAME_KIND_SPECS[kind].from === 'next stage' ? s : s - 1;
}

/**
 * Whether a frame of `kind` may hold no values (shape [1, 0]): a list of at most a step's micro-batches may be empty.
 */
export function mayBeEmpty(kind: FrameKind): boolean {
  return FRAME_KIND_SPECS[kind].length === 'micro-batches';
}
