/**
 * libp2p 3 nodes for Tessera, one factory for browser and Node (no Node-only imports here: Vite bundles this
 * file for the tab). The relay only signals: peers reserve a slot on it, then dial each other over
 * `<relay>/p2p-circuit/webrtc/p2p/<peer>`, which exchanges SDP through the relay and ends in a direct WebRTC
 * connection that carries the tensors.
 *
 * WebRTC pitfalls met on the way (see also shared/RECIPES.md, "libp2p 3"):
 * - ICE on loopback: with no STUN/TURN servers (iceServers: []) only host candidates exist. Chromium never
 *   offers 127.0.0.1 as a candidate, so two tabs on one machine connect over a non-loopback interface; in a
 *   network namespace with only `lo` the dial fails at ICE. Node (node-datachannel) does not need it.
 * - Chromium hides host IPs behind mDNS names (`<uuid>.local`) unless started with
 *   `--disable-features=WebRtcHideLocalIpsWithMdns`; headless test machines often cannot resolve them, so
 *   browser tests pass that flag.
 * - The first cold dial occasionally times out; dialWebRTC retries once.
 * - Chromium closes a data channel on messages over 256 KiB: writers chunk below that (net-transport.ts).
 * - The browser's default connection gater refuses private and loopback addresses (including the relay's
 *   ws://127.0.0.1): browser peers get a permissive gater.
 * - A reservation lives only as long as the connection that made it, and circuit-relay-v2 (4.x) does not win it
 *   back by itself: when the relay goes away its discovery dials the relay once, fails, and then waits for a relay
 *   to connect on its own. A restarted relay (the coordinator keeps its key and port, so the same multiaddr) then
 *   answers NO_RESERVATION for every peer that was there before. keepReservation re-dials it.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { identify } from '@libp2p/identify';
import type { Connection, Libp2p, PeerId, PrivateKey } from '@libp2p/interface';
import { ping } from '@libp2p/ping';
import { webRTC } from '@libp2p/webrtc';
import { webSockets } from '@libp2p/websockets';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { TesseraError } from '../errors.ts';

export class NetError extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('net', message, options);
  }
}

/**
 * Concurrent ping streams per connection. libp2p's default is 1, but two pingers share a connection: the
 * connection monitor (which closes a connection whose ping fails) and the link meter's RTT probe (link-meter.ts).
 * With one slot, the monitor's ping failed with "Too many outbound protocol streams" and took the connection —
 * and a step's tensor stream — down with it.
 */
const PING_LIMITS = { maxOutboundStreams: 4, maxInboundStreams: 4 };

export interface RelayOptions {
  host?: string;
  port?: number;
  privateKey?: PrivateKey;
  /** Reservation slots (default 1024: every volunteer holds one while online). */
  maxReservations?: number;
  /**
   * How long a slot outlives its peer's last refresh, in ms. Default 5 min: peers refresh every 30 s, so this is
   * how long a peer's event loop may stall (a long GPU step) before its slot lapses; libp2p's 2 h default held
   * the slots of long-gone peers and exhausted a 15-slot relay, which 1024 slots and 5 min do not.
   */
  reservationTtl?: number;
}

/** A relay: WebSockets listener, signalling only (the data plane is direct WebRTC). Node only in practice. */
export async function createRelay(opts: RelayOptions = {}): Promise<Libp2p> {
  const { host = '127.0.0.1', port = 0 } = opts;
  return createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: [`/ip4/${host}/tcp/${port}/ws`] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(PING_LIMITS),
      relay: circuitRelayServer({
        reservations: { maxReservations: opts.maxReservations ?? 1024, reservationTtl: opts.reservationTtl ?? 300_000 },
      }),
    },
  });
}

export interface PeerOptions {
  /** The relay's multiaddr including /p2p/<relay id>, e.g. /ip4/127.0.0.1/tcp/4001/ws/p2p/12D3Koo… */
  relayAddr: string;
  privateKey?: PrivateKey;
  /** Running in a browser: allow dialling private/loopback addresses (the default browser gater refuses them). */
  browser?: boolean;
  /** Where the reservation keeper says it lost and regained its relay reservation (default: console.log). */
  log?: (line: string) => void;
}

/**
 * A volunteer peer: dials the relay and listens for WebRTC through it, and keeps a reservation there for as long
 * as it runs (keepReservation). Call waitForRelayAddress before sharing its id.
 */
export async function createPeer(opts: PeerOptions): Promise<Libp2p> {
  const node = await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: ['/p2p-circuit', '/webrtc'] },
    transports: [webSockets(), webRTC({ rtcConfiguration: { iceServers: [] } }), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: opts.browser ? { denyDialMultiaddr: () => false } : undefined,
    services: { identify: identify(), ping: ping(PING_LIMITS) },
  });
  try {
    await node.dial(multiaddr(opts.relayAddr), { signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    await node.stop();
    throw new NetError(`cannot reach relay ${opts.relayAddr}: ${(e as Error).message}`);
  }
  const tag = node.peerId.toString().slice(-6);
  keepReservation(node, opts.relayAddr, opts.log ?? ((l) => console.log(`[peer ${tag}] ${l}`)));
  return node;
}

/** Backoff of the reservation keeper's re-dials: first, doubling up to the cap, each ±25 % so peers spread out. */
export const RESERVATION_BACKOFF = { firstMs: 500, maxMs: 5_000 };
/** How often the keeper looks, beside the address updates it listens to (a missed event costs at most this). */
const RESERVATION_CHECK_MS = 2_000;
/** Connected to the relay this long without a reservation: hang up and dial again (identify runs again). */
const RESERVATION_STUCK_MS = 8_000;

function circuitAddress(node: Libp2p, relayId: string | undefined): Multiaddr | undefined {
  return node
    .getMultiaddrs()
    .find((a) => a.toString().includes('/p2p-circuit') && (!relayId || a.toString().includes(relayId)));
}

/**
 * Keeps `node` holding a reservation on the relay at `relayAddr` while it runs. Whenever the node has no
 * /p2p-circuit address (the relay connection closed — the coordinator restarted, the relay's connection monitor
 * dropped a peer whose event loop stalled —, a refresh failed, or the relay refused), it dials the relay with
 * backoff; once connected, libp2p's relay discovery sees the relay's hop protocol (identify) and reserves. A
 * connection that brings no reservation within RESERVATION_STUCK_MS is hung up and dialled again, so identify
 * and the reservation run anew. Logs once when the reservation is lost and once when it is back.
 */
function keepReservation(node: Libp2p, relayAddr: string, log: (line: string) => void): void {
  const relay = multiaddr(relayAddr);
  const relayId = relay.getComponents().find((c) => c.name === 'p2p')?.value;
  let lostAt: number | undefined;
  let had = false;
  let dials = 0;
  let lastError = '';
  let connectedSince: number | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let repairing = false;
  const relayConnected = () =>
    node.getConnections().some((c) => c.remotePeer.toString() === relayId && c.status === 'open');
  const schedule = (ms: number) => {
    if (timer !== undefined || repairing || node.status !== 'started') return;
    timer = setTimeout(() => {
      timer = undefined;
      void repair();
    }, ms);
  };
  const backoff = () => {
    const ms = Math.min(RESERVATION_BACKOFF.maxMs, RESERVATION_BACKOFF.firstMs * 2 ** Math.max(0, dials - 1));
    return ms * (0.75 + Math.random() * 0.5);
  };
  const check = () => {
    if (node.status !== 'started') return;
    if (circuitAddress(node, relayId)) {
      if (lostAt !== undefined && had) {
        const s = ((Date.now() - lostAt) / 1000).toFixed(1);
        log(`relay reservation regained after ${s} s (${dials} dial${dials === 1 ? '' : 's'} of the relay)`);
      }
      had = true;
      lostAt = undefined;
      dials = 0;
      connectedSince = undefined;
      clearTimeout(timer);
      timer = undefined;
      return;
    }
    if (lostAt === undefined) {
      lostAt = Date.now();
      // Before the first reservation there is nothing lost: createPeer's caller waits for it (waitForRelayAddress).
      if (had) {
        const why = relayConnected() ? 'the relay dropped or refused it' : 'the relay connection closed';
        log(`relay reservation lost (${why}); re-dialling ${relayAddr} with backoff`);
      }
    }
    // A short grace first: libp2p re-reserves by itself when the connection is still there (a failed refresh).
    schedule(dials === 0 ? RESERVATION_BACKOFF.firstMs : backoff());
  };
  const repair = async () => {
    if (node.status !== 'started' || circuitAddress(node, relayId)) return check();
    repairing = true;
    try {
      if (relayConnected()) {
        connectedSince ??= Date.now();
        if (Date.now() - connectedSince < RESERVATION_STUCK_MS) return;
        // Connected, yet no reservation came: start the connection over so identify and discovery run again.
        await node.hangUp(relay).catch(() => {});
      }
      connectedSince = undefined;
      dials++;
      await node.dial(relay, { signal: AbortSignal.timeout(10_000) });
      connectedSince = Date.now();
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== lastError && had) log(`relay still unreachable (${msg}); retrying`);
      lastError = msg;
    } finally {
      repairing = false;
      check();
    }
  };
  node.addEventListener('self:peer:update', check);
  const tick = setInterval(check, RESERVATION_CHECK_MS);
  (tick as { unref?: () => void }).unref?.();
  node.addEventListener(
    'stop',
    () => {
      clearInterval(tick);
      clearTimeout(timer);
      node.removeEventListener('self:peer:update', check);
    },
    { once: true },
  );
}

/** Resolves with the node's first /p2p-circuit address, once the relay has granted a reservation. */
export function waitForRelayAddress(node: Libp2p, timeoutMs = 10_000): Promise<Multiaddr> {
  const circuit = () => node.getMultiaddrs().find((a) => a.toString().includes('/p2p-circuit'));
  const ready = circuit();
  if (ready) return Promise.resolve(ready);
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      node.removeEventListener('self:peer:update', check);
    };
    const check = () => {
      const a = circuit();
      if (a) {
        done();
        resolve(a);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(
        new NetError(
          `no relay reservation within ${timeoutMs} ms (is the relay running, with free reservation slots?)`,
        ),
      );
    }, timeoutMs);
    node.addEventListener('self:peer:update', check);
  });
}

/**
 * A connection the WebRTC transport made: its address carries /webrtc (dialer: <relay>/p2p-circuit/webrtc/p2p/<peer>,
 * listener: /webrtc/p2p/<peer>), libp2p counts it direct, and no relay limits apply to it.
 */
export function isDirectWebRTC(conn: Connection): boolean {
  const names = conn.remoteAddr.getComponents().map((c) => c.name);
  return names.includes('webrtc') && conn.direct && conn.limits === undefined && conn.status === 'open';
}

/**
 * Dials `peerId` over WebRTC, signalled through the relay; retries once (the first cold dial occasionally
 * times out). Throws NetError unless the result is a direct WebRTC connection.
 */
export async function dialWebRTC(
  node: Libp2p,
  relayAddr: string,
  peerId: PeerId | string,
  timeoutMs = 10_000,
): Promise<Connection> {
  const addr = multiaddr(`${relayAddr}/p2p-circuit/webrtc/p2p/${peerId.toString()}`);
  let conn: Connection;
  try {
    conn = await node.dial(addr, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (first) {
    try {
      conn = await node.dial(addr, { signal: AbortSignal.timeout(timeoutMs) });
    } catch (second) {
      throw new NetError(
        `WebRTC dial to ${peerId.toString()} via ${relayAddr} failed twice: ${(first as Error).message}; then ` +
          `${(second as Error).message}`,
      );
    }
  }
  if (!isDirectWebRTC(conn)) {
    throw new NetError(
      `connection to ${peerId.toString()} is not direct WebRTC (remote address ${conn.remoteAddr.toString()}, ` +
        `limits ${JSON.stringify(conn.limits ?? null)})`,
    );
  }
  return conn;
}
