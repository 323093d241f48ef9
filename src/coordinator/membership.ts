import { HttpError } from './errors.ts';
import { rebalance } from './placement.ts';
import type { Store } from './store.ts';
import type { Logger, PeerKind, PeerRecord } from './types.ts';

export interface MembershipOptions {
  store: Store;
  /** Peers heartbeat every heartbeatMs; one silent for 3× that is gone (default 2000). */
  heartbeatMs?: number;
  /** Clock (tests pass a fake one and call sweep() themselves). */
  now?: () => number;
  log?: Logger;
}

export interface JoinRequest {
  peerId: string;
  kind: PeerKind;
  tokensPerSecond: number;
  preferModel: string | null;
}

/** A new throughput measurement this far from the stored one triggers a reassignment (smaller ones are noise). */
const SPEED_CHANGE = 0.1;

/**
 * Who is in the swarm: joins, heartbeats, leaves, and the sweep that declares silent peers gone. Every change
 * of membership is an event and recomputes the assignment, so a stage whose peer vanished is taken over.
 */
export class Membership {
  readonly heartbeatMs: number;
  /** Silence after which a peer is gone: 3 heartbeats. */
  readonly timeoutMs: number;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly log?: Logger;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(opts: MembershipOptions) {
    const hb = opts.heartbeatMs ?? 2000;
    if (!Number.isFinite(hb) || hb <= 0) throw new RangeError(`heartbeatMs must be a positive number, got ${hb}`);
    this.heartbeatMs = hb;
    this.timeoutMs = 3 * hb;
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
  }

  /** A join, or a rejoin under the same peer id (which keeps its joined_at and history). */
  join(req: JoinRequest): PeerRecord {
    const at = this.now();
    return this.store.transaction(() => {
      const before = this.store.getPeer(req.peerId);
      const peer = this.store.upsertPeer({ ...req, at });
      const kind = !before ? 'join' : before.status === 'gone' ? 'rejoin' : 'join-again';
      this.store.logEvent(
        kind,
        { peerId: req.peerId, kind: req.kind, tokensPerSecond: req.tokensPerSecond, preferModel: req.preferModel },
        at,
      );
      this.log?.('info', `peer ${req.peerId} ${kind} (${req.kind}, ${req.tokensPerSecond} tokens/s)`);
      rebalance(this.store, at, `${kind} of ${req.peerId}`, this.log);
      return peer;
    });
  }

  /** Records a heartbeat; a peer never seen is 404, one already declared gone must join again (409). */
  heartbeat(peerId: string, tokensPerSecond?: number): PeerRecord {
    const at = this.now();
    const peer = this.store.getPeer(peerId);
    if (!peer) throw new HttpError('notFound', `unknown peer ${peerId}: join first (POST /api/peers/join)`);
    if (peer.status === 'gone')
      throw new HttpError(
        'conflict',
        `peer ${peerId} was declared gone (silent for over ${this.timeoutMs} ms, or it left): join again`,
      );
    // Throughput is stored only when it moved by over 10% (so slow drift adds up to one reassignment, not none).
    const changed =
      tokensPerSecond !== undefined &&
      Math.abs(tokensPerSecond - peer.tokensPerSecond) > SPEED_CHANGE * peer.tokensPerSecond;
    this.store.touchPeer(peerId, at, changed ? tokensPerSecond : undefined);
    if (changed) rebalance(this.store, at, `new throughput of ${peerId}`, this.log);
    return this.store.getPeer(peerId)!;
  }

  /** A peer leaving on purpose: gone at once, its stage reassigned. Leaving twice is harmless. */
  leave(peerId: string): void {
    const at = this.now();
    const peer = this.store.getPeer(peerId);
    if (!peer) throw new HttpError('notFound', `unknown peer ${peerId}`);
    if (peer.status === 'gone') return;
    this.store.transaction(() => {
      this.store.markPeerGone(peerId);
      this.store.logEvent('leave', { peerId }, at);
      rebalance(this.store, at, `leave of ${peerId}`, this.log);
    });
    this.log?.('info', `peer ${peerId} left`);
  }

  /** Declares gone every alive peer silent for more than timeoutMs; returns their ids. */
  sweep(): string[] {
    const at = this.now();
    const silent = this.store.listPeers('alive').filter((p) => at - p.lastSeen > this.timeoutMs);
    if (silent.length === 0) return [];
    this.store.transaction(() => {
      for (const p of silent) {
        this.store.markPeerGone(p.peerId);
        this.store.logEvent('gone', { peerId: p.peerId, silentMs: at - p.lastSeen }, at);
      }
      rebalance(this.store, at, `loss of ${silent.map((p) => p.peerId).join(', ')}`, this.log);
    });
    for (const p of silent) this.log?.('warn', `peer ${p.peerId} gone: no heartbeat for ${at - p.lastSeen} ms`);
    return silent.map((p) => p.peerId);
  }

  /** Sweeps every half heartbeat, so a dead peer is noticed within 3.5 heartbeats. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(
      () => {
        try {
          this.sweep();
        } catch (e) {
          this.log?.('error', `membership sweep failed: ${(e as Error).message}`);
        }
      },
      Math.max(5, this.heartbeatMs / 2),
    );
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
