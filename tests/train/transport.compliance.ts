/**
 * What every Transport must do, written only against the interface (after libp2p's interface-compliance
 * tests): run it for an implementation with `transportCompliance(name, factory)`. Each test gets fresh
 * endpoints from the factory, already able to reach each other, and cleans them up after.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FRAME_KIND_SPECS, FRAME_KINDS, type FrameKind } from '../../src/train/frame-kinds.ts';
import { TransportError, type Frame, type Transport } from '../../src/train/transport.ts';

export interface Endpoints {
  /** Connected endpoints, each able to send to every other by its id. */
  endpoints: Transport[];
  cleanup(): Promise<void> | void;
}

/** Creates `n` connected endpoints. */
export type TransportFactory = (n: number) => Promise<Endpoints>;

export interface ComplianceOptions {
  /** Per-test timeout (a real network needs more). */
  testTimeoutMs?: number;
  /** How long a receive that must succeed may wait. */
  receiveTimeoutMs?: number;
}

/** Rows and width of the tensor frames: small, but not a multiple of anything a transport might assume. */
const ROWS = 6;
const WIDTH = 10;

/** Deterministic bytes from a seed, so two frames with different seeds differ everywhere. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** A well-formed frame of `kind` (body as FRAME_KIND_SPECS says), its bytes drawn from `seed`. */
export function sampleFrame(kind: FrameKind, step: number, micro: number, seed: number, over: Partial<Frame> = {}) {
  const head = { model: 'compliance', fromStage: 1, fromReplica: 0, step, micro, kind };
  const body = FRAME_KIND_SPECS[kind].body;
  let frame: Frame;
  if (body === 'tensor') {
    const ids = Int32Array.from({ length: ROWS }, (_, i) => (i * 31 + seed) % 1000);
    frame = { ...head, shape: [ROWS, WIDTH], codec: 'none', payload: bytes(ROWS * WIDTH * 4, seed), ids };
  } else if (body === 'f32 list') {
    frame = { ...head, shape: [1, 5], codec: 'none', payload: bytes(20, seed) };
  } else {
    frame = { ...head, shape: [1, 1], codec: 'f64', payload: bytes(8, seed) };
  }
  return { ...frame, ...over };
}

/** A received frame equals the sent one: every head field, the payload byte for byte, the ids (or none). */
function expectSameFrame(got: Frame, sent: Frame): void {
  const { payload, ids, ...head } = got;
  const { payload: sentPayload, ids: sentIds, ...sentHead } = sent;
  expect(head).toEqual(sentHead);
  const [received, expected] = [payload, sentPayload].map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  // Buffer.equals first: a deep comparison of megabytes is slow, and only needed to describe a difference.
  if (!received.equals(expected)) expect(received).toEqual(expected);
  expect(received.length).toBe(expected.length);
  expect(ids ? Array.from(ids) : undefined).toEqual(sentIds ? Array.from(sentIds) : undefined);
}

/** Rejection of `p`, or a failure if it resolves. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection, got a frame');
}

export function transportCompliance(name: string, factory: TransportFactory, opts: ComplianceOptions = {}): void {
  const wait = opts.receiveTimeoutMs ?? 5_000;
  const testTimeout = opts.testTimeoutMs ?? 10_000;

  describe(`Transport compliance: ${name}`, () => {
    let made: Endpoints;
    let a: Transport;
    let b: Transport;
    let c: Transport;

    beforeEach(async () => {
      made = await factory(3);
      [a, b, c] = made.endpoints;
    }, testTimeout * 3);

    afterEach(async () => {
      await made.cleanup();
    }, testTimeout);

    it(
      'delivers a frame of every kind with its head, payload and ids intact',
      async () => {
        const sent = FRAME_KINDS.map((kind, i) => sampleFrame(kind, 3 + i, i, 100 + i));
        // An empty audit list: a frame with no body at all.
        const empty = sampleFrame('auditlist', 20, 1, 0, { shape: [1, 0], payload: new Uint8Array(0) });
        await Promise.all([...sent, empty].map((f) => a.send(b.id, f)));
        for (const f of [...sent, empty]) {
          expectSameFrame(await b.receive(f.step, f.micro, f.kind, { timeoutMs: wait }), f);
        }
        expect(sent.filter((f) => f.ids).length).toBe(3);
      },
      testTimeout,
    );

    it(
      'addresses frames by (step, micro, kind), whichever comes first: the frame or the receive',
      async () => {
        const keys: Array<[number, number, FrameKind]> = [];
        for (const step of [5, 6])
          for (const micro of [0, 1]) for (const kind of ['act', 'grad'] as const) keys.push([step, micro, kind]);
        const frames = keys.map(([step, micro, kind], i) => sampleFrame(kind, step, micro, 200 + i));
        // Half the receives wait before their frame exists, half find it already there.
        const early = frames.slice(0, 4).map((f) => b.receive(f.step, f.micro, f.kind, { timeoutMs: wait }));
        for (const f of frames) await a.send(b.id, f);
        const late = [...frames.slice(4)].reverse().map((f) => b.receive(f.step, f.micro, f.kind, { timeoutMs: wait }));
        const got = [...(await Promise.all(early)), ...(await Promise.all(late)).reverse()];
        got.forEach((g, i) => expectSameFrame(g, frames[i]));
      },
      testTimeout,
    );

    it(
      'delivers to the addressed endpoint only',
      async () => {
        const toB = sampleFrame('act', 7, 0, 301);
        const toC = sampleFrame('act', 7, 0, 302);
        await a.send(c.id, toC);
        await a.send(b.id, toB);
        expectSameFrame(await b.receive(7, 0, 'act', { timeoutMs: wait }), toB);
        expectSameFrame(await c.receive(7, 0, 'act', { timeoutMs: wait }), toC);
        // Endpoints send as well as receive: the same link backwards.
        const back = sampleFrame('grad', 7, 0, 303);
        await c.send(a.id, back);
        expectSameFrame(await a.receive(7, 0, 'grad', { timeoutMs: wait }), back);
      },
      testTimeout,
    );

    it(
      'resolves every send of a burst of large frames (backpressure) and delivers them all intact',
      async () => {
        // 24 frames of 384 KiB: far more than one chunk or one buffer of any link.
        const big = Array.from({ length: 24 }, (_, i) =>
          sampleFrame('gradsync', 8, i, 400 + i, { shape: [1, 96 * 1024], payload: bytes(384 * 1024, 400 + i) }),
        );
        const sends = big.map((f) => a.send(b.id, f));
        await expect(Promise.all(sends)).resolves.toBeDefined();
        for (const f of big) expectSameFrame(await b.receive(8, f.micro, 'gradsync', { timeoutMs: wait }), f);
      },
      testTimeout * 3,
    );

    it(
      'ignores a replayed frame, before and after the original is received',
      async () => {
        const first = sampleFrame('act', 9, 0, 501);
        const replay = sampleFrame('act', 9, 0, 502); // same key, other bytes: must never surface
        await a.send(b.id, first);
        await a.send(b.id, replay);
        expectSameFrame(await b.receive(9, 0, 'act', { timeoutMs: wait }), first);
        await a.send(b.id, first);
        // A marker after the replays on the same link: once it is here, so are they (links deliver in order).
        const marker = sampleFrame('norm', 9, 1, 503);
        await a.send(b.id, marker);
        expectSameFrame(await b.receive(9, 1, 'norm', { timeoutMs: wait }), marker);
        const err = await rejection(b.receive(9, 0, 'act', { timeoutMs: 300 }));
        expect(err.message).toMatch(/no act frame for step 9 micro-batch 0/);
      },
      testTimeout,
    );

    it(
      'rejects a receive that times out, saying which frame and how long',
      async () => {
        const t0 = performance.now();
        const err = await rejection(b.receive(11, 2, 'grad', { timeoutMs: 250 }));
        expect(performance.now() - t0).toBeGreaterThanOrEqual(240);
        expect(err).toBeInstanceOf(TransportError);
        expect(err.message).toMatch(/no grad frame for step 11 micro-batch 2: nothing within 250 ms/);
        expect((err as TransportError).code).toBe('receive-timeout');
        // The timed-out receive left nothing behind: the frame, when it comes, goes to the next receive.
        const f = sampleFrame('grad', 11, 2, 601);
        await a.send(b.id, f);
        expectSameFrame(await b.receive(11, 2, 'grad', { timeoutMs: wait }), f);
      },
      testTimeout,
    );

    it(
      'rejects a receive when its signal aborts, or at once when it already has',
      async () => {
        const ac = new AbortController();
        const pending = b.receive(12, 0, 'act', { timeoutMs: 60_000, signal: ac.signal });
        setTimeout(() => ac.abort('peer left'), 50);
        const t0 = performance.now();
        const err = await rejection(pending);
        expect(performance.now() - t0).toBeLessThan(5_000);
        expect(err).toBeInstanceOf(TransportError);
        expect(err.message).toMatch(/no act frame for step 12 micro-batch 0: aborted \(peer left\)/);
        expect((err as TransportError).code).toBe('receive-aborted');
        const already = await rejection(b.receive(12, 1, 'act', { timeoutMs: 60_000, signal: ac.signal }));
        expect(already.message).toMatch(/aborted/);
        // The aborted receive does not swallow its frame.
        const f = sampleFrame('act', 12, 0, 701);
        await a.send(b.id, f);
        expectSameFrame(await b.receive(12, 0, 'act', { timeoutMs: wait }), f);
      },
      testTimeout,
    );

    it(
      'close() rejects pending receives, later receives and later sends',
      async () => {
        const pending = b.receive(13, 0, 'act', { timeoutMs: 60_000 });
        const t0 = performance.now();
        b.close();
        const err = await rejection(pending);
        expect(performance.now() - t0).toBeLessThan(5_000);
        expect(err).toBeInstanceOf(TransportError);
        expect(err.message).toMatch(/closed/);
        expect((err as TransportError).code).toBe('transport-closed');
        expect((await rejection(b.receive(13, 1, 'act', { timeoutMs: 60_000 }))).message).toMatch(/closed/);
        await expect(b.send(a.id, sampleFrame('grad', 13, 0, 801))).rejects.toThrow(TransportError);
        b.close(); // closing twice is harmless
      },
      testTimeout,
    );

    it(
      'counts the frames and bytes it sends and receives',
      async () => {
        const frames = [sampleFrame('act', 14, 0, 901), sampleFrame('norm', 14, 1, 902)];
        const sent0 = { ...a.stats };
        const got0 = { ...b.stats };
        for (const f of frames) await a.send(b.id, f);
        expect(a.stats.framesSent - sent0.framesSent).toBe(2);
        const bodyBytes = frames.reduce((n, f) => n + f.payload.byteLength + (f.ids?.byteLength ?? 0), 0);
        const sentBytes = a.stats.bytesSent - sent0.bytesSent;
        expect(sentBytes).toBeGreaterThanOrEqual(bodyBytes);
        for (const f of frames) await b.receive(f.step, f.micro, f.kind, { timeoutMs: wait });
        expect(b.stats.framesReceived - got0.framesReceived).toBe(2);
        // Both ends count the same frames the same way.
        expect(b.stats.bytesReceived - got0.bytesReceived).toBe(sentBytes);
        expect(a.stats.framesReceived).toBe(sent0.framesReceived);
      },
      testTimeout,
    );

    it(
      'refuses to send to an endpoint it does not know, and does not count it',
      async () => {
        const before = a.stats.framesSent;
        const err = await rejection(a.send('nobody', sampleFrame('act', 15, 0, 1001)));
        expect(err).toBeInstanceOf(TransportError);
        expect(err.message).toMatch(/nobody/);
        expect(a.stats.framesSent).toBe(before);
      },
      testTimeout,
    );
  });
}
