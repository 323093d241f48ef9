/**
 * A real network in one process: a relay and two Node peers (libp2p 3, WebRTC via node-datachannel) on
 * 127.0.0.1, the direct WebRTC connection signalled through the relay, and NetTransport on both ends.
 */
import type { Libp2p } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/model/config.ts';
import { checkFrame, type FrameExpectation } from '../../src/net/frame-check.ts';
import { frameLimitsFor, TENSOR_PROTOCOL } from '../../src/net/frame-codec.ts';
import { NetTransport } from '../../src/net/net-transport.ts';
import { createPeer, createRelay, dialWebRTC, isDirectWebRTC, waitForRelayAddress } from '../../src/net/node.ts';
import type { Frame } from '../../src/train/transport.ts';

// rows·dModel·4 = (2·128)·1024·4 = 1 MiB per boundary tensor.
const cfg: ModelConfig = { vocab: 512, dModel: 1024, heads: 8, layers: 2, context: 128 };
const batch = 2;
const rows = batch * cfg.context;
const limits = frameLimitsFor(cfg, batch, 2);

function expectation(stage: number): FrameExpectation {
  return {
    model: 'net-test',
    stages: 2,
    replicas: [1, 1],
    self: { stage, replica: 0 },
    rows,
    width: cfg.dModel,
    codecs: ['none'],
    minStep: 0,
    maxStep: 100,
    microBatches: 4,
    vocab: cfg.vocab,
  };
}

function tensor(kind: 'act' | 'grad', step: number, seed: number): Frame {
  const payload = new Uint8Array(rows * cfg.dModel * 4);
  let x = seed >>> 0;
  for (let i = 0; i < payload.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    payload[i] = x >>> 24;
  }
  const ids = Int32Array.from({ length: rows }, (_, i) => (i * 7 + seed) % cfg.vocab);
  return {
    model: 'net-test',
    fromStage: kind === 'act' ? 0 : 1,
    fromReplica: 0,
    step,
    micro: 0,
    kind,
    shape: [rows, cfg.dModel],
    codec: 'none',
    payload,
    ids,
  };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const logs: string[] = [];
const log = { info: (m: string) => logs.push(`info ${m}`), warn: (m: string) => logs.push(`warn ${m}`) };

describe('NetTransport over libp2p WebRTC', () => {
  const nodes: Libp2p[] = [];
  const transports: NetTransport[] = [];
  let relayAddr = '';
  let a: Libp2p, b: Libp2p;
  let ta: NetTransport, tb: NetTransport;

  beforeAll(async () => {
    const relay = await createRelay();
    nodes.push(relay);
    relayAddr = relay.getMultiaddrs()[0].toString();
    a = await createPeer({ relayAddr });
    nodes.push(a);
    b = await createPeer({ relayAddr });
    nodes.push(b);
    await Promise.all([waitForRelayAddress(a), waitForRelayAddress(b)]);
    const directory: Record<string, string> = { s0: a.peerId.toString(), s1: b.peerId.toString() };
    const resolve = (w: string) => directory[w];
    ta = new NetTransport({ node: a, id: 's0', resolve, limits, check: (f) => checkFrame(f, expectation(0)), log });
    tb = new NetTransport({ node: b, id: 's1', resolve, limits, check: (f) => checkFrame(f, expectation(1)), log });
    transports.push(ta, tb);
    await Promise.all([ta.start(), tb.start()]);
  }, 30_000);

  afterAll(async () => {
    for (const t of transports) t.close();
    await Promise.all(nodes.map((n) => n.stop()));
  });

  it('dials a direct WebRTC connection through the relay', async () => {
    const conn = await dialWebRTC(a, relayAddr, b.peerId);
    expect(isDirectWebRTC(conn)).toBe(true);
    expect(conn.remoteAddr.toString()).toMatch(new RegExp(`/p2p-circuit/webrtc/p2p/${b.peerId.toString()}$`));
    expect(conn.limits).toBeUndefined();
    // The listener's side of the same connection: /webrtc/p2p/<dialer>.
    await until(() => b.getConnections(a.peerId).some(isDirectWebRTC), 'the listener to see the WebRTC connection');
    const back = b.getConnections(a.peerId).find(isDirectWebRTC)!;
    expect(back.remoteAddr.toString()).toBe(`/webrtc/p2p/${a.peerId.toString()}`);
  }, 30_000);

  it('moves a 1 MiB act forward and a grad back, byte for byte', async () => {
    const act = tensor('act', 1, 11);
    const grad = tensor('grad', 1, 22);
    expect(act.payload.byteLength).toBe(1 << 20);
    const t0 = performance.now();
    const [gotAct, gotGrad] = await Promise.all([
      tb.receive(1, 0, 'act', { timeoutMs: 15_000 }),
      ta.receive(1, 0, 'grad', { timeoutMs: 15_000 }),
      ta.send('s1', act),
      tb.send('s0', grad),
    ]);
    const ms = performance.now() - t0;
    expect(Buffer.from(gotAct.payload).equals(Buffer.from(act.payload))).toBe(true);
    expect(Buffer.from(gotGrad.payload).equals(Buffer.from(grad.payload))).toBe(true);
    expect(Array.from(gotAct.ids!)).toEqual(Array.from(act.ids!));
    expect({ ...gotAct, payload: 0, ids: 0 }).toEqual({ ...act, payload: 0, ids: 0 });
    // Every tensor stream rode the WebRTC connection, none the relay.
    const streams = a
      .getConnections(b.peerId)
      .flatMap((c) => c.streams.filter((s) => s.protocol === TENSOR_PROTOCOL).map(() => c));
    expect(streams.length).toBeGreaterThan(0);
    expect(streams.every(isDirectWebRTC)).toBe(true);
    expect(ta.stats.framesSent).toBe(1);
    expect(tb.stats.framesReceived).toBe(1);
    console.log(`1 MiB each way over WebRTC in ${ms.toFixed(0)} ms`);
  }, 30_000);

  it('ignores a replayed frame', async () => {
    const act = tensor('act', 2, 33);
    await ta.send('s1', act);
    const first = await tb.receive(2, 0, 'act', { timeoutMs: 10_000 });
    expect(Buffer.from(first.payload).equals(Buffer.from(act.payload))).toBe(true);
    await ta.send('s1', act);
    await until(() => tb.stats.framesDuplicate === 1, 'the replay to arrive');
    await expect(tb.receive(2, 0, 'act', { timeoutMs: 300 })).rejects.toThrow(/no act frame for step 2/);
  }, 30_000);

  it('rejects garbage and refused frames, and keeps working', async () => {
    const before = tb.stats.framesRejected;
    // Garbage on a raw stream: a 5-byte "header" that is not JSON. The stream is reset.
    const conn = a.getConnections(b.peerId).find(isDirectWebRTC)!;
    const raw = await conn.newStream(TENSOR_PROTOCOL);
    raw.send(Uint8Array.from([0, 0, 0, 5, 0x6e, 0x6f, 0x70, 0x65, 0x21, 1, 2, 3]));
    await until(() => tb.stats.framesRejected === before + 1, 'the garbage to be rejected');
    await until(() => raw.status !== 'open', 'the garbage stream to be reset');
    expect(logs.some((l) => /undecodable data .*header is not UTF-8 JSON; resetting the stream/.test(l))).toBe(true);
    // A well-formed frame for another model, on the transport's own stream: refused, stream kept.
    await ta.send('s1', { ...tensor('act', 3, 44), model: 'intruder' });
    await until(() => tb.stats.framesRejected === before + 2, 'the foreign frame to be refused');
    expect(logs.some((l) => /refused a act frame .*model "intruder", expected "net-test"/.test(l))).toBe(true);
    // A good frame afterwards still arrives.
    const good = tensor('act', 3, 55);
    await ta.send('s1', good);
    const got = await tb.receive(3, 0, 'act', { timeoutMs: 10_000 });
    expect(Buffer.from(got.payload).equals(Buffer.from(good.payload))).toBe(true);
  }, 30_000);

  it('replaces an outgoing stream that broke between frames', async () => {
    const outbound = () =>
      a
        .getConnections(b.peerId)
        .flatMap((c) => c.streams)
        .filter((s) => s.protocol === TENSOR_PROTOCOL && s.direction === 'outbound' && s.status === 'open');
    const [old] = outbound();
    expect(old).toBeDefined();
    old.abort(new Error('cut by the test'));
    const next = tensor('grad', 4, 66);
    await tb.send('s0', next);
    const frame = tensor('act', 4, 77);
    await ta.send('s1', frame);
    const got = await tb.receive(4, 0, 'act', { timeoutMs: 10_000 });
    expect(Buffer.from(got.payload).equals(Buffer.from(frame.payload))).toBe(true);
    expect(outbound().some((s) => s !== old)).toBe(true);
    expect((await ta.receive(4, 0, 'grad', { timeoutMs: 10_000 })).step).toBe(4);
  }, 30_000);

  it('refuses to send to a worker the directory does not know', async () => {
    await expect(ta.send('s9', tensor('act', 5, 1))).rejects.toThrow(/no peer known for worker s9/);
    expect(ta.stats.framesSent).toBe(6); // the five earlier sends and the replay: the refused send is not counted
  });
});

describe('NetTransport to a peer that is not listening yet', () => {
  it('keeps asking until the peer registers the tensor protocol, then delivers', async () => {
    const relay = await createRelay();
    const relayAddr = relay.getMultiaddrs()[0].toString();
    const [a, b] = [await createPeer({ relayAddr }), await createPeer({ relayAddr })];
    await Promise.all([waitForRelayAddress(a), waitForRelayAddress(b)]);
    const directory: Record<string, string> = { s0: a.peerId.toString(), s1: b.peerId.toString() };
    const resolve = (w: string) => directory[w];
    const ta = new NetTransport({
      node: a,
      id: 's0',
      resolve,
      limits,
      check: (f) => checkFrame(f, expectation(0)),
      log,
    });
    const tb = new NetTransport({
      node: b,
      id: 's1',
      resolve,
      limits,
      check: (f) => checkFrame(f, expectation(1)),
      log,
    });
    try {
      await ta.start();
      await dialWebRTC(a, relayAddr, b.peerId);
      const frame = tensor('act', 3, 11);
      const sent = ta.send('s1', frame);
      await new Promise((r) => setTimeout(r, 1500)); // b is still "loading its stage"
      await tb.start();
      await sent;
      const got = await tb.receive(3, 0, 'act', { timeoutMs: 10_000 });
      expect(got.payload).toEqual(frame.payload);
    } finally {
      ta.close();
      tb.close();
      await Promise.all([a.stop(), b.stop(), relay.stop()]);
    }
  }, 30_000);
});
