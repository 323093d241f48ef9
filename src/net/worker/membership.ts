/**
 * A worker's membership in the swarm: it joins, heartbeats every `heartbeatMs` (a peer the coordinator declared
 * gone joins again and keeps its stage state), keeps the latest answer, and turns answers into layout changes.
 * The coordinator's assignment is the only source of the pipeline's layout; this is where the worker hears it.
 * Through a coordinator outage the heartbeats go on at the same pace (they are what notices it is back) and the
 * outage is logged once when it begins and once when it ends (src/net/CHURN.md, Outages).
 */
import type { Libp2p } from 'libp2p';
import {
  CoordinatorError,
  transientError,
  type Assignment,
  type CoordinatorClient,
  type JoinAnswer,
  type OutageEvent,
} from '../coordinator-client.ts';
import { LinkMeter } from '../link-meter.ts';
import type { NetTransport } from '../net-transport.ts';
import { sleep } from '../rendezvous.ts';
import { layoutKey } from '../resume.ts';

/** Every stage of the model has at least one holder. */
export function complete(a: Assignment): boolean {
  return Array.from({ length: a.stages }, (_, s) => s).every((s) =>
    a.pipeline.some((p) => p.stage === s && p.peers.length > 0),
  );
}

/** The layout an answer describes: its assignment's key, or 'wait' without an assignment. */
export function layoutOf(a: JoinAnswer): string {
  return a.status === 'assigned' ? layoutKey(a.assignment) : 'wait';
}

/** The answer's assignment when every stage has a holder (the pipeline can train), else undefined. */
export function trainable(a: JoinAnswer): Assignment | undefined {
  return a.status === 'assigned' && complete(a.assignment) ? a.assignment : undefined;
}

/** What a worker without a trainable pipeline is waiting for. */
export function waitingFor(a: JoinAnswer): string {
  return a.status === 'wait'
    ? `waiting: ${a.reason}`
    : `stage ${a.assignment.stage} of ${a.assignment.modelId}: waiting for holders of the other stages`;
}

/** A heartbeat answer whose layout differs from the answer before it. */
export interface LayoutChanged {
  type: 'layout-changed';
  layout: string;
  answer: JoinAnswer;
}

export interface MembershipOptions {
  client: CoordinatorClient;
  node: Libp2p;
  peerId: string;
  tokensPerSecond: number;
  kind: 'node' | 'browser';
  log: (line: string) => void;
  /** What the heartbeat reports: the step and round the worker stands at, and its round's tensor transport. */
  /** waitingFor: the stages the model is paused for (no holder or snapshot of them), [] when it is not. */
  progress: () => { step: number; round: number; transport?: NetTransport; waitingFor?: number[] };
  onChange: (e: LayoutChanged) => void;
}

export class Membership {
  private readonly o: MembershipOptions;
  /** The coordinator's latest answer (set once settle() returns). */
  latest?: JoinAnswer;
  heartbeatMs = 2000;
  private timer?: ReturnType<typeof setInterval>;
  private linkMeter?: LinkMeter;
  /** A heartbeat is on its way (an unanswered one can take seconds: the next waits for it). */
  private beating = false;
  private unwatch?: () => void;

  constructor(o: MembershipOptions) {
    this.o = o;
  }

  /**
   * Joins, then heartbeats until every stage has a holder and the layout held still for one heartbeat (joins
   * arriving together move peers around while the coordinator balances them). `seen` gets every answer;
   * undefined when `stopped()` said so first.
   */
  async settle(stopped: () => boolean, seen: (a: JoinAnswer) => void): Promise<JoinAnswer | undefined> {
    const { client, peerId, tokensPerSecond, kind } = this.o;
    this.watch();
    // A coordinator that is down (or restarting) when the worker starts is waited for, not a reason to exit.
    let answer = await client.untilAnswered(() => client.join(peerId, tokensPerSecond, kind), { stopped });
    this.heartbeatMs = answer.heartbeatMs;
    let previous = '';
    for (;;) {
      if (stopped()) return undefined;
      seen(answer);
      const layout = trainable(answer) ? layoutOf(answer) : '';
      if (layout && layout === previous) break;
      if (!layout) this.o.log(waitingFor(answer));
      previous = layout;
      await sleep(answer.heartbeatMs);
      answer = await client.untilAnswered(() => this.heartbeatOnce(), { stopped });
    }
    this.latest = answer;
    return answer;
  }

  /** Heartbeats every heartbeatMs from now on (again, if it was stopped) until stop(). */
  start(): void {
    this.watch();
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.beat(), this.heartbeatMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.unwatch?.();
    this.unwatch = undefined;
  }

  /** Logs each outage of the coordinator once, where it begins and where it ends. */
  private watch(): void {
    this.unwatch ??= this.o.client.onOutage((e) => this.o.log(outageLine(e, this.o.progress().step)));
  }

  /** The stage `peer` has in `model` in the assignment this worker last saw. */
  assignedStage(model: string, peer: string): number | undefined {
    const a = this.latest;
    if (a?.status !== 'assigned' || a.assignment.modelId !== model) return undefined;
    return a.assignment.pipeline.find((s) => s.peers.some((p) => p.peerId === peer))?.stage;
  }

  /** A heartbeat; a peer the coordinator declared gone (409) joins again and keeps its stage state. */
  private async heartbeatOnce(): Promise<JoinAnswer> {
    const { client, peerId, node } = this.o;
    const { step, round, transport, waitingFor = [] } = this.o.progress();
    const t = transport?.stats;
    const stats = {
      step,
      round,
      bytesSent: t?.bytesSent ?? 0,
      bytesReceived: t?.bytesReceived ?? 0,
      // The lowest stage the model waits for (stats are numbers only); absent while it trains.
      ...(waitingFor.length ? { waitingForStage: Math.min(...waitingFor), waitingForStages: waitingFor.length } : {}),
    };
    // Per-peer bytes and round trips: the coordinator's measured links (Researcher topology, bytes per token).
    const links = (this.linkMeter ??= new LinkMeter(node)).reports(transport?.peerStats);
    try {
      return await client.heartbeat(peerId, stats, links);
    } catch (e) {
      if (!(e instanceof CoordinatorError) || (e.code !== 'conflict' && e.code !== 'not-found')) throw e;
      this.o.log(`the coordinator no longer counts this peer (${e.message}); joining again`);
      return client.join(peerId, this.o.tokensPerSecond, this.o.kind);
    }
  }

  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    let answer: JoinAnswer;
    try {
      answer = await this.heartbeatOnce();
    } catch (e) {
      // An outage is logged once, by watch(); the beats go on and the first answered one ends it.
      if (!transientError(e)) this.o.log(`heartbeat failed: ${(e as Error).message}`);
      return;
    } finally {
      this.beating = false;
    }
    const before = this.latest && layoutOf(this.latest);
    this.latest = answer;
    const layout = layoutOf(answer);
    if (layout !== before) this.o.onChange({ type: 'layout-changed', layout, answer });
  }
}

/** The one line a worker logs where an outage of the coordinator begins or ends. */
export function outageLine(e: OutageEvent, step: number): string {
  const since = new Date(e.since).toISOString();
  return e.type === 'down'
    ? `coordinator unreachable since ${since} (${e.error.message}); training paused at step ${step}, retrying`
    : `coordinator answers again after ${(e.ms / 1000).toFixed(1)} s (unreachable since ${since}); training ` +
        `resumes from step ${step}`;
}
