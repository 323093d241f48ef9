import { describe, expect, it } from 'vitest';
import { checkFrame, type FrameExpectation } from '../../src/net/frame-check.ts';
import { FrameError } from '../../src/net/frame-codec.ts';
import type { Frame } from '../../src/train/transport.ts';

// Receiver: stage 1 (replica 0 of 2) of a 3-stage pipeline; boundary 0 uncompressed, boundary 1 int8.
const expect0: FrameExpectation = {
  model: 'tiny',
  stages: 3,
  replicas: [2, 2, 1],
  self: { stage: 1, replica: 0 },
  rows: 8,
  width: 4,
  codecs: ['none', 'int8'],
  minStep: 10,
  maxStep: 12,
  microBatches: 4,
  stageParams: 100,
  vocab: 50,
};

const ids = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 49]);
const good: Record<string, Frame> = {
  act: {
    model: 'tiny',
    fromStage: 0,
    fromReplica: 0,
    step: 11,
    micro: 2,
    kind: 'act',
    shape: [8, 4],
    codec: 'none',
    payload: new Uint8Array(8 * 4 * 4),
    ids,
  },
  grad: {
    model: 'tiny',
    fromStage: 2,
    fromReplica: 0,
    step: 10,
    micro: 2,
    kind: 'grad',
    shape: [8, 4],
    codec: 'int8',
    payload: new Uint8Array(8 * (4 + 4)),
    ids,
  },
  gradsync: {
    model: 'tiny',
    fromStage: 1,
    fromReplica: 1,
    step: 12,
    micro: 1,
    kind: 'gradsync',
    shape: [1, 100],
    codec: 'none',
    payload: new Uint8Array(400),
  },
  norm: {
    model: 'tiny',
    fromStage: 2,
    fromReplica: 0,
    step: 12,
    micro: 2,
    kind: 'norm',
    shape: [1, 1],
    codec: 'f64',
    payload: new Uint8Array(8),
  },
  // Micro-batch 1 belongs to replica 1 of stage 1: replica 0 may audit it.
  audit: {
    model: 'tiny',
    fromStage: 0,
    fromReplica: 1,
    step: 11,
    micro: 1,
    kind: 'audit',
    shape: [8, 4],
    codec: 'none',
    payload: new Uint8Array(8 * 4 * 4),
    ids,
  },
  auditlist: {
    model: 'tiny',
    fromStage: 0,
    fromReplica: 1,
    step: 11,
    micro: 1,
    kind: 'auditlist',
    shape: [1, 2],
    codec: 'none',
    payload: new Uint8Array(8),
  },
  emptyAuditlist: {
    model: 'tiny',
    fromStage: 0,
    fromReplica: 0,
    step: 11,
    micro: 0,
    kind: 'auditlist',
    shape: [1, 0],
    codec: 'none',
    payload: new Uint8Array(0),
  },
};

function refused(f: Frame, reason: RegExp, e: FrameExpectation = expect0): void {
  let err: unknown;
  try {
    checkFrame(f, e);
  } catch (x) {
    err = x;
  }
  expect(err, `expected refusal ${reason}`).toBeInstanceOf(FrameError);
  expect((err as FrameError).reason).toMatch(reason);
}

describe('checkFrame', () => {
  it('accepts a right frame of each kind', () => {
    for (const f of Object.values(good)) expect(() => checkFrame(f, expect0)).not.toThrow();
    // Subspace codecs: any rank k in [1, width].
    const sub = { ...expect0, codecs: ['subspace', 'subspace+int8'] };
    expect(() => checkFrame({ ...good.act, codec: 'subspace', payload: new Uint8Array(8 * 2 * 4) }, sub)).not.toThrow();
    expect(() =>
      checkFrame({ ...good.grad, codec: 'subspace+int8', payload: new Uint8Array(8 * (4 + 3)) }, sub),
    ).not.toThrow();
  });

  const cases: [string, Frame, RegExp][] = [
    ['another model', { ...good.act, model: 'other' }, /model "other", expected "tiny"/],
    ['a stage outside the pipeline', { ...good.norm, fromStage: 3, micro: 3 }, /no stage 3 in a 3-stage pipeline/],
    ['a replica the stage lacks', { ...good.grad, fromReplica: 1 }, /stage 2 has 1 replicas/],
    ['act from a non-neighbour', { ...good.act, fromStage: 2, fromReplica: 0 }, /act must come from stage 0/],
    ['grad from the previous stage', { ...good.grad, fromStage: 0 }, /grad must come from stage 2/],
    ['gradsync from another stage', { ...good.gradsync, fromStage: 0 }, /another replica of stage 1/],
    ['gradsync from itself', { ...good.gradsync, fromReplica: 0, micro: 0 }, /another replica of stage 1/],
    ['a step before the window', { ...good.act, step: 9 }, /step outside the window \[10, 12\]/],
    ['a step after the window', { ...good.act, step: 13 }, /step outside the window/],
    ['a micro-batch beyond the step', { ...good.act, micro: 4 }, /micro-batch beyond 3/],
    ['a micro-batch of the other replica', { ...good.act, micro: 1, fromReplica: 1 }, /belongs to replica 1, not 0/],
    ['the wrong sending replica', { ...good.act, fromReplica: 1 }, /micro-batch 2 is sent by replica 0/],
    [
      'wrong rows',
      { ...good.act, shape: [7, 4], payload: new Uint8Array(7 * 16) },
      /shape \[7, 4\], expected \[8, 4\]/,
    ],
    ['wrong width', { ...good.act, shape: [8, 5] }, /shape \[8, 5\], expected \[8, 4\]/],
    [
      'the wrong codec for the boundary',
      { ...good.act, codec: 'int8', payload: new Uint8Array(64) },
      /codec int8, boundary uses none/,
    ],
    [
      'a truncated none payload',
      { ...good.act, payload: new Uint8Array(127) },
      /payload of 127 bytes does not fit codec none/,
    ],
    ['a wrong int8 payload', { ...good.grad, payload: new Uint8Array(128) }, /does not fit codec int8/],
    ['ids for other rows', { ...good.act, ids: Int32Array.from([1, 2]) }, /2 token ids for 8 rows/],
    [
      'a token id outside the vocabulary',
      { ...good.act, ids: Int32Array.from([0, 1, 2, 3, 4, 5, 6, 50]) },
      /token id 50 at 7 outside \[0, 50\)/,
    ],
    ['a negative token id', { ...good.grad, ids: Int32Array.from([0, -1, 2, 3, 4, 5, 6, 7]) }, /token id -1/],
    ['gradsync micro not its replica', { ...good.gradsync, micro: 0 }, /micro must equal the sending replica/],
    [
      'gradsync of another size',
      { ...good.gradsync, shape: [1, 99], payload: new Uint8Array(396) },
      /99 gradient values, stage has 100/,
    ],
    [
      'gradsync with a short payload',
      { ...good.gradsync, payload: new Uint8Array(399) },
      /payload of 399 bytes for 100 float32/,
    ],
    ['compressed gradsync', { ...good.gradsync, codec: 'int8' }, /shape \[1, n\] with codec none/],
    ['gradsync with ids', { ...good.gradsync, ids }, /gradsync carries no token ids/],
    ['norm micro not its stage', { ...good.norm, micro: 0 }, /norm micro must equal the sending stage/],
    ['norm as float32', { ...good.norm, payload: new Uint8Array(4) }, /norm must be one float64/],
    [
      'an audit of the receiver’s own micro-batch',
      { ...good.audit, micro: 2, fromReplica: 0 },
      /this replica's own: it cannot audit it/,
    ],
    ['an audit from the wrong stage', { ...good.audit, fromStage: 2, fromReplica: 0 }, /audit must come from stage 0/],
    [
      'an audit list from another replica’s slot',
      { ...good.auditlist, micro: 0 },
      /auditlist micro must equal the sending replica/,
    ],
    [
      'an audit list longer than a step',
      { ...good.auditlist, shape: [1, 5], payload: new Uint8Array(20) },
      /names 5 micro-batches of 4/,
    ],
    ['an audit list with a short payload', { ...good.auditlist, payload: new Uint8Array(4) }, /shape \[1, n\] float32/],
  ];
  for (const [name, f, reason] of cases) it(`refuses ${name}`, () => refused(f, reason));

  it('refuses act at stage 0 and grad at the last stage (no such neighbour)', () => {
    refused(good.act, /act must come from stage -1/, { ...expect0, self: { stage: 0, replica: 0 } });
    refused({ ...good.grad, fromStage: 2 }, /grad must come from stage 3/, {
      ...expect0,
      self: { stage: 2, replica: 0 },
    });
  });

  it('refuses subspace payloads no rank explains', () => {
    const sub = { ...expect0, codecs: ['subspace', 'subspace+int8'] };
    refused({ ...good.act, codec: 'subspace', payload: new Uint8Array(8 * 5 * 4) }, /does not fit codec subspace/, sub);
    refused({ ...good.act, codec: 'subspace', payload: new Uint8Array(8 * 6) }, /does not fit codec subspace/, sub);
    refused(
      { ...good.grad, codec: 'subspace+int8', payload: new Uint8Array(8 * 4) },
      /does not fit codec subspace\+int8/,
      sub,
    );
  });
});
