/**
 * What a worker's heartbeat reports of its links, on a real network in one process: a relay, two Node peers
 * with a direct WebRTC connection, NetTransport on both ends. Per-peer byte counters follow the frames each way;
 * the round trip comes from libp2p (its connection monitor, else the ping service).
 */
import type { Libp2p } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/model/config.ts';
import { checkFrame, type FrameExpectation } from '../../src/net/frame-check.ts';
import { frameLimitsFor } from '../../src/net/frame-codec.ts';
import { LinkMeter } from '../../src/net/link-meter.ts';
import { NetTransport } from '../../src/net/net-transport.ts';
import { createPeer, createRelay, dialWebRTC, waitForRelayAddress } from '../../src/net/node.ts';
import { frameBytes, type Frame } from '../../src/train/transport.ts';

const cfg: ModelConfig = { vocab: 64, dModel: 32, heads: 2, layers: 2, context: 16 };
const rows = 2 * cfg.context;
const limits = frameLimitsFor(cfg, 2, 2);

const expectation = (stage: number): FrameExpectation => ({
  model: 'links',
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
});

const frame = (kind: 'act' | 'grad', step: number): Frame => ({
  model: 'links',
  fromStage: kind === 'act' ? 0 : 1,
  fromReplica: 0,
  step,
  micro: 0,
  kind,
  shape: [rows, cfg.dModel],
  codec: 'none',
  payload: new Uint8Array(rows * cfg.dModel * 4).fill(step),
  ids: Int32Array.from({ length: rows }, (_, i) => i % cfg.vocab),
});

describe('LinkMeter over NetTransport.peerStats', () => {
  const nodes: Libp2p[] = [];
  let a: Libp2p, b: Libp2p;
  let ta: NetTransport, tb: NetTransport;

  beforeAll(async () => {
    const relay = await createRelay();
    nodes.push(relay);
    const relayAddr = relay.getMultiaddrs()[0].toString();
    a = await createPeer({ relayAddr });
    b = await createPeer({ relayAddr });
    nodes.push(a, b);
    await Promise.all([waitForRelayAddress(a), waitForRelayAddress(b)]);
    await dialWebRTC(a, relayAddr, b.peerId);
    const directory: Record<string, string> = { s0: a.peerId.toString(), s1: b.peerId.toString() };
    const quiet = { info: () => {}, warn: () => {} };
    ta = new NetTransport({
      node: a,
      id: 's0',
      resolve: (w) => directory[w],
      limits,
      check: (f) => checkFrame(f, expectation(0)),
      log: quiet,
    });
    tb = new NetTransport({
      node: b,
      id: 's1',
      resolve: (w) => directory[w],
      limits,
      check: (f) => checkFrame(f, expectation(1)),
      log: quiet,
    });
    await Promise.all([ta.start(), tb.start()]);
  }, 30_000);

  afterAll(async () => {
    ta?.close();
    tb?.close();
    await Promise.all(nodes.map((n) => n.stop()));
  });

  it('counts bytes per peer each way and reports them with a round trip', async () => {
    const sent: Frame[] = [frame('act', 1), frame('act', 2)];
    for (const f of sent) await ta.send('s1', f);
    await tb.receive(1, 0, 'act', { timeoutMs: 10_000 });
    await tb.receive(2, 0, 'act', { timeoutMs: 10_000 });
    await tb.send('s0', frame('grad', 1));
    await ta.receive(1, 0, 'grad', { timeoutMs: 10_000 });
    const actBytes = sent.reduce((t, f) => t + frameBytes(f), 0);
    const gradBytes = frameBytes(frame('grad', 1));
    expect(ta.peerStats.get(b.peerId.toString())).toEqual({ bytesSent: actBytes, bytesReceived: gradBytes });
    expect(tb.peerStats.get(a.peerId.toString())).toEqual({ bytesSent: gradBytes, bytesReceived: actBytes });

    const meter = new LinkMeter(a);
    const first = meter.reports(ta.peerStats);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ peerId: b.peerId.toString(), bytesSent: actBytes, bytesReceived: gradBytes });
    // The ping started by the first report answers within a moment; the next report carries its round trip.
    let rtt: number | null = null;
    for (let i = 0; i < 100 && rtt === null; i++) {
      await new Promise((r) => setTimeout(r, 20));
      rtt = meter.reports(ta.peerStats)[0].rttMs;
    }
    expect(typeof rtt).toBe('number');
    expect(rtt!).toBeGreaterThanOrEqual(0);
    expect(rtt!).toBeLessThan(2000);
    expect(meter.reports(undefined)).toEqual([]);
  }, 30_000);
});
