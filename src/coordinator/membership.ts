import { HttpError } from './errors.ts';
import { rebalance } from './placement.ts';
import type { Store } from './store.ts';
import type { AssignmentRecord, Logger, PeerKind, PeerRecord } from './types.ts';

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
/** Swept peers whose seats are remembered for their rejoin (the oldest forgotten first). */
const SWEPT_KEPT = 4096;

/**
 * Who is in the swarm: joins, heartbeats, leaves, and the sweep that declares silent peers gone. Every change
 * of membership is an event and recomputes the assignment, so a stage whose peer vanished is taken over.
 * Outages: a peer swept for silence that comes back (its heartbeat answered 409, it joins again under the same
 * key) takes its seat back when nobody took it meanwhile, so the pipeline it stood in re-forms as it was. After a
 * coordinator restart the peers recorded alive get 3 fresh heartbeats of grace (Coordinator.start touches them)
 * instead of being declared gone for the downtime.
 */
export class Membership {
  readonly heartbeatMs: number;
  /** Silence after which a peer is gone: 3 heartbeats. */
  readonly timeoutMs: number;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly log?: Logger;
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Where each peer swept for silence sat (not one that left on purpose): its rejoin takes the seat back. */
  private readonly sweptSeats = new Map<string, { at: number; seats: AssignmentRecord[] }>();
  /** Silence before this time does not count (set when sweeping starts, and after this process stalled). */
  private quietUntil = -Infinity;
  /** A rebalance held back for swept peers still to rejoin, until then (sweep() runs it). */
  private holdUntil: number | null = null;

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
      const sweptAt = this.sweptSeats.get(req.peerId)?.at;
      const restored = kind === 'rejoin' ? this.restoreSeats(req.peerId, at) : [];
      this.store.logEvent(
        kind,
        {
          peerId: req.peerId,
          kind: req.kind,
          tokensPerSecond: req.tokensPerSecond,
          preferModel: req.preferModel,
          ...(restored.length ? { restored } : {}),
        },
        at,
      );
      const back = restored.map((a) => ` back to ${a.modelId}/${a.stage}.${a.replica}`).join(',');
      this.log?.('info', `peer ${req.peerId} ${kind} (${req.kind}, ${req.tokensPerSecond} tokens/s)${back}`);
      // Peers swept together come back one by one: a rebalance between their rejoins would move the first ones
      // to cover the stages the others are about to take back. It waits (3 heartbeats at most, see sweep()).
      if (restored.length > 0 && sweptAt !== undefined && this.othersExpected(sweptAt))
        this.holdUntil = at + this.timeoutMs;
      else {
        this.holdUntil = null;
        rebalance(this.store, at, `${kind} of ${req.peerId}`, this.log);
      }
      return peer;
    });
  }

  /**
   * A swept peer's seats that are still free (its model exists and no peer holds that stage and replica) are its
   * again; the rebalance that follows keeps them like any placed peer's (moves need a real gain). Returns them.
   */
  private restoreSeats(peerId: string, at: number): Array<Omit<AssignmentRecord, 'since'>> {
    const current = this.store.listAssignments();
    const free = current.some((c) => c.peerId === peerId) ? [] : this.freeSeats(peerId, current);
    this.sweptSeats.delete(peerId);
    if (free.length > 0) this.store.replaceAssignments([...current, ...free], at);
    return free;
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
    if (this.holdUntil !== null && at >= this.holdUntil) {
      this.holdUntil = null;
      rebalance(this.store, at, 'the rejoin grace of swept peers ending', this.log);
    }
    const silent = this.store
      .listPeers('alive')
      .filter((p) => at - Math.max(p.lastSeen, this.quietUntil) > this.timeoutMs);
    if (silent.length === 0) return [];
    this.store.transaction(() => {
      for (const p of silent) {
        this.remember(p.peerId, at);
        this.store.markPeerGone(p.peerId);
        this.store.logEvent('gone', { peerId: p.peerId, silentMs: at - p.lastSeen }, at);
      }
      rebalance(this.store, at, `loss of ${silent.map((p) => p.peerId).join(', ')}`, this.log);
    });
    for (const p of silent) this.log?.('warn', `peer ${p.peerId} gone: no heartbeat for ${at - p.lastSeen} ms`);
    return silent.map((p) => p.peerId);
  }

  /** The seats `peerId` held when it was swept that nobody holds now (of models that still exist). */
  private freeSeats(peerId: string, current: readonly AssignmentRecord[]): Array<Omit<AssignmentRecord, 'since'>> {
    const seat = (a: Omit<AssignmentRecord, 'since' | 'peerId'>) => `${a.modelId}\u0000${a.stage}\u0000${a.replica}`;
    const taken = new Set(current.map(seat));
    return (this.sweptSeats.get(peerId)?.seats ?? [])
      .filter((a) => this.store.getModel(a.modelId) && !taken.has(seat(a)))
      .map(({ modelId, stage, replica }) => ({ modelId, stage, replica, peerId }));
  }

  /** Another peer swept with the one swept at `at` (within 3 heartbeats) could still take a seat back. */
  private othersExpected(at: number): boolean {
    const current = this.store.listAssignments();
    return [...this.sweptSeats].some(
      ([p, s]) => Math.abs(s.at - at) <= this.timeoutMs && this.freeSeats(p, current).length > 0,
    );
  }

  private remember(peerId: string, at: number): void {
    const seats = this.store.assignmentsOf(peerId);
    this.sweptSeats.delete(peerId);
    if (seats.length === 0) return;
    this.sweptSeats.set(peerId, { at, seats });
    if (this.sweptSeats.size > SWEPT_KEPT) this.sweptSeats.delete(this.sweptSeats.keys().next().value!);
  }

  /** Sweeps every half heartbeat, so a dead peer is noticed within 3.5 heartbeats. */
  start(): void {
    if (this.timer) return;
    const period = Math.max(5, this.heartbeatMs / 2);
    // Peers recorded alive before this start (a restart) get 3 heartbeats from now to be heard again.
    let last = (this.quietUntil = this.now());
    this.timer = setInterval(() => {
      const at = this.now();
      // This process stalled (a long synchronous task, CPU starvation): the heartbeats that arrived meanwhile
      // still wait unread behind this timer, so silence is counted from now, not from before the stall.
      if (at - last > 4 * period) {
        this.quietUntil = at;
        this.log?.('warn', `the coordinator stalled for ${at - last} ms: peers get 3 heartbeats from now`);
      }
      last = at;
      try {
        this.sweep();
      } catch (e) {
        this.log?.('error', `membership sweep failed: ${(e as Error).message}`);
      }
    }, period);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
