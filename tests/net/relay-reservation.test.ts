import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { afterAll, describe, expect, it } from 'vitest';
import { startCoordinator } from '../../src/cli/coordinator.ts';
import { loadOrCreateKey } from '../../src/net/identity-node.ts';
import { createPeer, createRelay, dialWebRTC, waitForRelayAddress } from '../../src/net/node.ts';
import { waitFor } from './worker-processes.ts';

/**
 * The relay half of "workers outlive outages": a restarted relay has the same multiaddr (its key kept beside the
 * coordinator database, its port fixed), and every peer wins its reservation back by itself — without it a
 * newcomer's WebRTC dial to a peer that was online before the restart ends in NO_RESERVATION.
 */
const dir = mkdtempSync(join(tmpdir(), 'tessera-relay-'));
const nodes: Libp2p[] = [];
afterAll(async () => {
  await Promise.allSettled(nodes.map(async (n) => n.stop()));
  rmSync(dir, { recursive: true, force: true });
});

const circuit = (n: Libp2p) => n.getMultiaddrs().some((a) => a.toString().includes('/p2p-circuit'));

describe('relay reservations across relay restarts', () => {
  it('peers regain their reservation on a restarted relay, and a newcomer reaches them over WebRTC', async () => {
    const key = await loadOrCreateKey(join(dir, 'relay.key'));
    let relay = await createRelay({ privateKey: key });
    nodes.push(relay);
    const relayAddr = relay.getMultiaddrs()[0].toString();
    const port = Number(relayAddr.split('/')[4]);
    const logs: string[] = [];
    const peers: Libp2p[] = [];
    for (const i of [0, 1]) {
      const peer = await createPeer({ relayAddr, log: (l) => logs.push(`p${i} ${l}`) });
      nodes.push(peer);
      peers.push(peer);
      await waitForRelayAddress(peer);
    }

    // Restart: the relay goes away (its connections close), stays away past a few re-dials, comes back.
    await relay.stop();
    expect(await waitFor(() => peers.every((p) => !circuit(p)), 5_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 2_000));
    relay = await createRelay({ privateKey: await loadOrCreateKey(join(dir, 'relay.key')), port });
    nodes.push(relay);
    expect(relay.getMultiaddrs()[0].toString()).toBe(relayAddr);
    const back = Date.now();
    expect(await waitFor(() => peers.every(circuit), 10_000), logs.join('\n')).toBe(true);
    const took = Date.now() - back;
    // The keeper logs on the address update libp2p sends a moment after the address itself changed.
    const regained = (i: number) => logs.filter((l) => l.startsWith(`p${i} relay reservation regained`)).length;
    await waitFor(() => regained(0) + regained(1) === 2, 5_000);

    for (const i of [0, 1]) {
      expect(logs.filter((l) => l.startsWith(`p${i} relay reservation lost`)).length, logs.join('\n')).toBe(1);
      expect(regained(i), logs.join('\n')).toBe(1);
    }

    // A newcomer signals through the restarted relay to both peers that were there before it.
    const newcomer = await createPeer({ relayAddr, log: (l) => logs.push(`new ${l}`) });
    nodes.push(newcomer);
    await waitForRelayAddress(newcomer);
    for (const p of peers) expect((await dialWebRTC(newcomer, relayAddr, p.peerId)).status).toBe('open');

    // The relay drops a peer's connection (its connection monitor does so to a peer whose event loop stalled past
    // the ping timeout): the peer is back on the relay, reserved, and reachable by another newcomer.
    const relayId = relay.peerId;
    const closed = new Promise<void>((resolve) =>
      peers[0].addEventListener('connection:close', (e) => e.detail.remotePeer.equals(relayId) && resolve()),
    );
    await relay.hangUp(peers[0].peerId);
    await closed;
    const onRelay = () => relay.getConnections(peers[0].peerId).length > 0;
    expect(await waitFor(() => circuit(peers[0]) && onRelay(), 10_000), logs.join('\n')).toBe(true);
    const late = await createPeer({ relayAddr, log: (l) => logs.push(`late ${l}`) });
    nodes.push(late);
    await waitForRelayAddress(late);
    const conn = await dialWebRTC(late, relayAddr, peers[0].peerId).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs.join('\n')}`);
    });
    expect(conn.status).toBe('open');
    console.log(`reservations regained ${took} ms after the relay came back\n${logs.join('\n')}`);
  }, 60_000);

  it('a coordinator restarted on the same database and relay port is the same relay multiaddr', async () => {
    const dbPath = join(dir, 'c.db');
    const first = await startCoordinator({ dbPath, relayPort: 0, registerDefault: false });
    const addr = first.relay!.multiaddrs[0];
    const port = Number(addr.split('/')[4]);
    await first.stop();
    const second = await startCoordinator({ dbPath, relayPort: port, registerDefault: false });
    try {
      expect(second.relay!.multiaddrs[0]).toBe(addr);
    } finally {
      await second.stop();
    }
    // Another database is another relay.
    const other = await startCoordinator({ dbPath: join(dir, 'other.db'), registerDefault: false });
    try {
      expect(other.relay!.multiaddrs[0].split('/p2p/')[1]).not.toBe(addr.split('/p2p/')[1]);
    } finally {
      await other.stop();
    }
  }, 30_000);
});
