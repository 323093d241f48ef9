/**
 * What a worker's heartbeat tells the coordinator about its links: per peer its tensor transport exchanged
 * frames with, the bytes sent and received (the transport's per-peer counters) and the round trip. The round
 * trip is libp2p's: the connection monitor's `rtt` when it has measured one, else the ping service's answer
 * from the previous heartbeat (pings run in the background, so a heartbeat never waits on a slow peer).
 */
import type { Libp2p, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { LinkReport } from './coordinator-client.ts';

/** The coordinator takes at most this many links per heartbeat. */
export const MAX_LINKS = 64;
const PING_TIMEOUT_MS = 2000;

interface PingService {
  ping(peer: PeerId, options?: { signal?: AbortSignal }): Promise<number>;
}

export class LinkMeter {
  private readonly node: Libp2p;
  private readonly rtts = new Map<string, number>();
  private readonly pinging = new Set<string>();

  constructor(node: Libp2p) {
    this.node = node;
  }

  /** The links of `counters` (peer id → bytes), with the latest round trip of each; starts the next pings. */
  reports(counters: ReadonlyMap<string, { bytesSent: number; bytesReceived: number }> | undefined): LinkReport[] {
    if (!counters) return [];
    const self = this.node.peerId.toString();
    const out: LinkReport[] = [];
    for (const [peerId, c] of counters) {
      if (peerId === self || out.length >= MAX_LINKS) continue;
      out.push({ peerId, bytesSent: c.bytesSent, bytesReceived: c.bytesReceived, rttMs: this.rttOf(peerId) });
    }
    return out;
  }

  private rttOf(peerId: string): number | null {
    let peer: PeerId;
    try {
      peer = peerIdFromString(peerId);
    } catch {
      return null;
    }
    const monitored = this.node.getConnections(peer).find((c) => c.status === 'open' && typeof c.rtt === 'number')?.rtt;
    if (monitored !== undefined) return monitored;
    this.ping(peer, peerId);
    return this.rtts.get(peerId) ?? null;
  }

  private ping(peer: PeerId, key: string): void {
    const service = (this.node.services as { ping?: PingService }).ping;
    if (!service || this.pinging.has(key)) return;
    this.pinging.add(key);
    service
      .ping(peer, { signal: AbortSignal.timeout(PING_TIMEOUT_MS) })
      .then((ms) => void this.rtts.set(key, ms))
      .catch(() => void this.rtts.delete(key))
      .finally(() => this.pinging.delete(key));
  }
}
