/**
 * The Transport compliance suite for NetTransport over a real network in one process: a relay and three Node
 * peers (libp2p 3, WebRTC via node-datachannel) with direct WebRTC connections between every pair, set up once;
 * each test gets fresh NetTransports on those peers.
 */
import type { Libp2p } from '@libp2p/interface';
import { afterAll, beforeAll } from 'vitest';
import type { FrameLimits } from '../../src/net/frame-codec.ts';
import { NetTransport } from '../../src/net/net-transport.ts';
import { createPeer, createRelay, dialWebRTC, waitForRelayAddress } from '../../src/net/node.ts';
import { transportCompliance } from '../train/transport.compliance.ts';

const PEERS = 3;
/**
 * Room for the suite's largest frame (a 384 KiB list) and no more: limits are the receiver's, not the suite's concern.
 */
const limits: FrameLimits = { maxHeaderBytes: 4096, maxPayloadBytes: 512 * 1024, maxIds: 64 };
const quiet = { info: () => {}, warn: () => {} };

let relay: Libp2p;
const peers: Libp2p[] = [];

beforeAll(async () => {
  relay = await createRelay();
  const relayAddr = relay.getMultiaddrs()[0].toString();
  for (let i = 0; i < PEERS; i++) peers.push(await createPeer({ relayAddr }));
  await Promise.all(peers.map((p) => waitForRelayAddress(p)));
  for (let i = 0; i < PEERS; i++)
    for (let j = i + 1; j < PEERS; j++) await dialWebRTC(peers[i], relayAddr, peers[j].peerId);
}, 60_000);

afterAll(async () => {
  await Promise.all([...peers, relay].map((n) => n.stop()));
});

transportCompliance(
  'NetTransport over libp2p WebRTC',
  async (n) => {
    if (n > PEERS) throw new Error(`the test network has ${PEERS} peers, ${n} asked`);
    const directory = new Map(peers.slice(0, n).map((p, i) => [`e${i}`, p.peerId.toString()]));
    const endpoints = peers.slice(0, n).map(
      (node, i) =>
        // Frames are checked by the suite itself; this transport accepts whatever decodes within the limits.
        new NetTransport({
          node,
          id: `e${i}`,
          resolve: (id) => directory.get(id) ?? '',
          limits,
          check: () => {},
          log: quiet,
        }),
    );
    await Promise.all(endpoints.map((t) => t.start()));
    return { endpoints, cleanup: () => endpoints.forEach((t) => t.close()) };
  },
  { testTimeoutMs: 30_000, receiveTimeoutMs: 15_000 },
);
