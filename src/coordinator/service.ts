import { type Departure, Departures, HANDOFF_MS } from './departures.ts';
import { HttpError } from './errors.ts';
import { LedgerStore } from './ledger-store.ts';
import { Links, parseLinks } from './links.ts';
import type { Membership } from './membership.ts';
import { rebalance } from './placement.ts';
import { parseModelInput } from './registry.ts';
import type { Store } from './store.ts';
import type { Teams } from './teams.ts';
import {
  METRIC_KINDS,
  PEER_KINDS,
  type Logger,
  type MetricRecord,
  type ModelRecord,
  type StepRecord,
} from './types.ts';
import { finite, integer, object, oneOf, onlyKeys, PEER_ID, string } from './validate.ts';
import { assignmentView, modelDetail, modelSummary, peerView, topologyView } from './views.ts';
import type { LeaveAnswer, RelayInfo } from '../wire/index.ts';

/** Where peers reach the coordinator's libp2p relay (reported by the API; the relay itself lives in src/net). */
export type { RelayInfo };

export interface ServiceOptions {
  store: Store;
  membership: Membership;
  now: () => number;
  log: Logger;
  relay: RelayInfo | null;
  referenceFlopsPerToken: number;
  teams: Teams;
}

/** Told of every metric newly recorded (not of replays), with the step when it is a finished training step. */
export type MetricListener = (metric: MetricRecord, step: StepRecord | null) => void;

const LIST_LIMIT = 1000;

/**
 * What the API does, minus HTTP: each method validates its untrusted input (throwing typed errors with the
 * reason) and returns a JSON-ready object.
 */
export class CoordinatorService {
  private readonly o: ServiceOptions;
  private readonly startedAt: number;
  /** Called after a model is registered (the coordinator registers it on chain). */
  onModelRegistered: (m: ModelRecord) => void = () => {};
  /** Last stats each peer sent with its heartbeat (volatile: only for display). */
  private readonly stats = new Map<string, Record<string, number>>();
  private readonly listeners: MetricListener[] = [];
  readonly links: Links;
  private readonly departures: Departures;

  constructor(opts: ServiceOptions) {
    this.o = opts;
    this.startedAt = opts.now();
    this.links = new Links(opts.store);
    this.departures = new Departures(opts.store);
  }

  onMetric(fn: MetricListener): void {
    this.listeners.push(fn);
  }

  private notify(metric: MetricRecord, step: StepRecord | null): void {
    for (const fn of this.listeners) {
      try {
        fn(metric, step);
      } catch (e) {
        this.o.log('error', `metric listener failed: ${(e as Error).message}`);
      }
    }
  }

  health() {
    const { store, membership, relay } = this.o;
    return {
      ok: true,
      uptimeMs: this.o.now() - this.startedAt,
      schemaVersion: store.schemaVersion(),
      models: store.listModels().length,
      peersAlive: store.listPeers('alive').length,
      heartbeatMs: membership.heartbeatMs,
      relay,
    };
  }

  listModels() {
    return {
      models: this.o.store
        .listModels()
        .map((m) => modelSummary(this.o.store, m, this.o.referenceFlopsPerToken, this.waitingOf)),
    };
  }

  registerModel(body: unknown) {
    const { store } = this.o;
    const at = this.o.now();
    const model = parseModelInput(body, at);
    store.transaction(() => {
      if (!store.insertModel(model)) throw new HttpError('conflict', `model id ${model.id} is taken`);
      store.logEvent('model', { modelId: model.id, name: model.name, stages: model.spec.layout.length }, at);
      rebalance(store, at, `registration of ${model.id}`, this.o.log);
    });
    this.o.log('info', `model ${model.id} registered (${model.spec.layout.length} stages)`);
    this.onModelRegistered(model);
    return { model: modelDetail(store, model, this.o.referenceFlopsPerToken, this.waitingOf) };
  }

  model(id: string) {
    return { model: modelDetail(this.o.store, this.modelOr404(id), this.o.referenceFlopsPerToken, this.waitingOf) };
  }

  /** The stage a peer's last heartbeat said its model waits for (paused), if any. */
  private readonly waitingOf = (peerId: string): number | undefined => this.stats.get(peerId)?.waitingForStage;

  join(body: unknown) {
    const o = object(body, 'join');
    onlyKeys(o, 'join', ['peerId', 'kind', 'tokensPerSecond', 'preferModel']);
    const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
    const kind = oneOf(o.kind, 'kind', PEER_KINDS);
    const tokensPerSecond = finite(o.tokensPerSecond, 'tokensPerSecond', 0, true);
    const preferModel =
      o.preferModel === undefined || o.preferModel === null ? null : string(o.preferModel, 'preferModel');
    if (preferModel !== null) this.modelOr404(preferModel);
    this.endDepartures();
    // A join is a new session of the peer (a restarted worker, a reopened tab): a hand-off it began is over.
    if (this.departures.remove(peerId))
      this.o.store.logEvent('handoff-end', { peerId, why: 'joined again' }, this.o.now());
    this.o.membership.join({ peerId, kind, tokensPerSecond, preferModel });
    return this.answer(peerId);
  }

  heartbeat(body: unknown) {
    const o = object(body, 'heartbeat');
    onlyKeys(o, 'heartbeat', ['peerId', 'stats', 'links']);
    const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
    const links = o.links === undefined ? [] : parseLinks(o.links, peerId);
    // First, so a departing peer past its deadline is gone before its own heartbeat counts (409: join again).
    this.endDepartures();
    let tokensPerSecond: number | undefined;
    if (o.stats !== undefined) {
      const stats = object(o.stats, 'stats');
      const clean: Record<string, number> = {};
      const keys = Object.keys(stats);
      if (keys.length > 32) throw new HttpError('badRequest', `stats: at most 32 fields, got ${keys.length}`);
      for (const k of keys) clean[k] = finite(stats[k], `stats.${k}`);
      if (stats.tokensPerSecond !== undefined)
        tokensPerSecond = finite(stats.tokensPerSecond, 'stats.tokensPerSecond', 0, true);
      this.o.membership.heartbeat(peerId, tokensPerSecond);
      this.stats.set(peerId, clean);
    } else {
      this.o.membership.heartbeat(peerId);
    }
    this.links.record(peerId, links, this.o.now());
    return this.answer(peerId);
  }

  /**
   * POST /api/peers/leave `{ peerId, handoff? }`. Without handoff (or from a peer handing off, its final leave):
   * the peer is gone at once and its stage reassigned. With `handoff: true` from a peer that holds a stage: it
   * leaves the layout at once, but stays alive and listed as a departing holder of its stage for HANDOFF_MS (see
   * departures.ts); from a peer that holds none, or is gone already, a handoff is a no-op that says why. Anyone
   * who knows a peer id may call this (peers are not authenticated yet).
   */
  leave(body: unknown): LeaveAnswer {
    const o = object(body, 'leave');
    onlyKeys(o, 'leave', ['peerId', 'handoff']);
    const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
    if (o.handoff !== undefined && typeof o.handoff !== 'boolean')
      throw new HttpError(
        'badRequest',
        `handoff must be true or false, got ${JSON.stringify(o.handoff)?.slice(0, 40)}`,
      );
    const handoff = o.handoff === true;
    this.endDepartures();
    if (handoff) return this.handoff(peerId);
    const { store } = this.o;
    store.transaction(() => {
      if (this.departures.remove(peerId)) store.logEvent('handoff-end', { peerId, why: 'left' }, this.o.now());
      this.o.membership.leave(peerId);
    });
    this.stats.delete(peerId);
    return { ok: true, peerId };
  }

  private handoff(peerId: string): LeaveAnswer {
    const { store } = this.o;
    const at = this.o.now();
    const peer = store.getPeer(peerId);
    if (!peer) throw new HttpError('notFound', `unknown peer ${peerId}`);
    const view = (d: Departure) => ({
      modelId: d.modelId,
      stage: d.stage,
      until: d.until,
      successors: store
        .listAssignments(d.modelId)
        .filter((a) => a.stage === d.stage)
        .map((a) => a.peerId),
    });
    const prior = this.departures.get(peerId);
    if (prior && peer.status === 'alive') return { ok: true, peerId, handoff: view(prior) };
    if (peer.status === 'gone')
      return { ok: true, peerId, handoff: null, reason: `peer ${peerId} is gone already: nothing to hand off` };
    const held = store.assignmentsOf(peerId)[0];
    if (!held)
      return {
        ok: true,
        peerId,
        handoff: null,
        reason: `peer ${peerId} holds no stage: nothing to hand off (leave without handoff to go)`,
      };
    const d = store.transaction(() => {
      const d = this.departures.add({
        peerId,
        modelId: held.modelId,
        stage: held.stage,
        since: at,
        until: at + HANDOFF_MS,
      });
      store.logEvent('leave-handoff', { peerId, modelId: d.modelId, stage: d.stage, until: d.until }, at);
      rebalance(store, at, `hand-off leave of ${peerId}`, this.o.log);
      return d;
    });
    this.o.log('info', `peer ${peerId} hands off stage ${d.stage} of ${d.modelId} before it leaves`);
    return { ok: true, peerId, handoff: view(d) };
  }

  /**
   * Ends the hand-offs that are over: a departing peer past its deadline is made to leave (gone, so its stage's
   * holders stop waiting for it); the record of one already gone is dropped.
   */
  private endDepartures(): void {
    const { store } = this.o;
    const at = this.o.now();
    for (const d of this.departures.over(at)) {
      store.transaction(() => {
        this.departures.remove(d.peerId);
        store.logEvent('handoff-end', { peerId: d.peerId, why: d.alive ? 'deadline' : 'gone' }, at);
        if (d.alive) this.o.membership.leave(d.peerId);
      });
      if (d.alive) this.stats.delete(d.peerId);
    }
  }

  listPeers() {
    const { store } = this.o;
    return { peers: store.listPeers().map((p) => peerView(store, p, this.stats.get(p.peerId))) };
  }

  /** A step report's replica counts: one per stage, each from 1 to the most that stage ever had. */
  private roundReplicas(modelId: string, layout: readonly number[], raw: unknown): number[] {
    if (!Array.isArray(raw) || raw.length !== layout.length)
      throw new HttpError('badRequest', `replicas must be an array of ${layout.length} counts, one per stage`);
    const ledger = new LedgerStore(this.o.store);
    return raw.map((x, stage) => {
      const n = integer(x, `replicas[${stage}]`, 1);
      const ever = ledger.replicasEver(modelId, stage);
      if (n > ever)
        throw new HttpError('badRequest', `replicas[${stage}] is ${n}; stage ${stage} never had more than ${ever}`);
      return n;
    });
  }

  /**
   * A worker's report of a step: `{ step, loss, tokens?, kind?: 'train' | 'val', status?: 'done' | 'failed' |
   * 'running', peerId?, replicas? }`. Each (step, kind) is recorded once: a replay answers the stored record with
   * duplicate: true. `replicas`: each stage's replica count in the round that trained the step (its receipts claim
   * it); without it, the assignment's count now, which runs ahead of a pipeline still training its previous round.
   */
  reportMetric(modelId: string, body: unknown) {
    const { store } = this.o;
    const model = this.modelOr404(modelId);
    const o = object(body, 'metric');
    onlyKeys(o, 'metric', ['step', 'loss', 'tokens', 'kind', 'status', 'peerId', 'replicas']);
    const step = integer(o.step, 'step', 0);
    const kind = o.kind === undefined ? 'train' : oneOf(o.kind, 'kind', METRIC_KINDS);
    const status = o.status === undefined ? 'done' : oneOf(o.status, 'status', ['done', 'failed', 'running'] as const);
    const tokens = o.tokens === undefined ? null : integer(o.tokens, 'tokens', 0);
    if (o.peerId !== undefined) {
      const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
      if (!store.assignmentsOf(peerId).some((a) => a.modelId === modelId))
        throw new HttpError('forbidden', `peer ${peerId} holds no stage of model ${modelId}`);
    }
    const reported = o.replicas === undefined ? undefined : this.roundReplicas(model.id, model.spec.layout, o.replicas);
    const at = this.o.now();
    if (kind === 'val' || status === 'done') {
      const loss = finite(o.loss, 'loss');
      const out = store.transaction(() => {
        const prior = store.getStep(modelId, step);
        if (kind === 'train' && prior?.status === 'done')
          return {
            step: prior,
            metric: store.addMetric({ modelId, step, kind, value: prior.loss ?? loss, at }).metric,
            duplicate: true,
          };
        const record =
          kind === 'train'
            ? store.recordStep({ modelId, step, status: 'done', loss, tokens, at })
            : (store.getStep(modelId, step) ?? null);
        if (kind === 'train') {
          const replicas = model.spec.layout.map(() => 0);
          for (const a of store.listAssignments(modelId)) replicas[a.stage]++;
          store.setStepReplicas(modelId, step, reported ?? replicas);
          // Receipts that came before the record are held to it now, as later ones are when they come.
          const bound = store.stepReplicas(modelId, step) ?? replicas;
          const dropped = new LedgerStore(store).dropBelowReplicas(modelId, step, bound);
          if (dropped > 0)
            this.o.log(
              'warn',
              `${dropped} receipt(s) of step ${step} refused after the fact: fewer replicas than [${bound}] claimed`,
            );
        }
        const { metric, duplicate } = store.addMetric({ modelId, step, kind, value: loss, at });
        return { step: record, metric, duplicate };
      });
      if (!out.duplicate) this.notify(out.metric, kind === 'train' ? out.step : null);
      return out;
    }
    return store.transaction(() => {
      const prior = store.getStep(modelId, step);
      if (prior?.status === 'done')
        throw new HttpError(
          'conflict',
          `step ${step} of model ${modelId} is already done: a '${status}' report cannot undo it`,
        );
      return {
        step: store.recordStep({ modelId, step, status, tokens, at }),
        metric: null,
        duplicate: prior?.status === status,
      };
    });
  }

  metrics(modelId: string, since: number, limit = LIST_LIMIT) {
    const { store } = this.o;
    this.modelOr404(modelId);
    const metrics = store.listMetrics(modelId, since, Math.min(limit, LIST_LIMIT));
    return {
      modelId,
      metrics,
      next: metrics.length > 0 ? metrics[metrics.length - 1].id : since,
      steps: store.countSteps(modelId),
    };
  }

  /** GET /api/models/:id/throughput: tokens/s per done step (the latest `limit` without `since`). */
  throughput(modelId: string, since: number | null, limit = LIST_LIMIT) {
    this.modelOr404(modelId);
    return { modelId, points: this.o.store.throughput(modelId, since, Math.min(limit, LIST_LIMIT)) };
  }

  /**
   * GET /api/models/:id/topology: stages × peers (with teams), measured links, each boundary's codec and bytes per
   * token.
   */
  topology(modelId: string) {
    return topologyView(
      this.o.store,
      this.modelOr404(modelId),
      this.o.referenceFlopsPerToken,
      this.links,
      this.o.teams.memberships(),
    );
  }

  /** What a live stream starts with: the last 500 metrics and throughput points. */
  liveSnapshot(modelId: string, points = 500) {
    const { store } = this.o;
    this.modelOr404(modelId);
    return { metrics: store.latestMetrics(modelId, points), throughput: store.throughput(modelId, null, points) };
  }

  events(since: number, limit = LIST_LIMIT) {
    const events = this.o.store.listEvents(since, Math.min(limit, LIST_LIMIT));
    return { events, next: events.length > 0 ? events[events.length - 1].id : since };
  }

  /** The answer to a join or heartbeat: the peer's stage, or why it waits. */
  private answer(peerId: string) {
    const { store, membership, relay } = this.o;
    const base = { peerId, heartbeatMs: membership.heartbeatMs, relay };
    const mine = store.assignmentsOf(peerId)[0];
    if (mine)
      return {
        ...base,
        status: 'assigned' as const,
        assignment: assignmentView(store, mine, this.departures.ofModel(mine.modelId, this.o.now())),
      };
    const leaving = this.departures.get(peerId);
    if (leaving)
      return {
        ...base,
        status: 'wait' as const,
        reason:
          `handing off stage ${leaving.stage} of model ${leaving.modelId}` +
          ` (until ${new Date(leaving.until).toISOString()})`,
        retryMs: membership.heartbeatMs,
        handoff: { modelId: leaving.modelId, stage: leaving.stage, until: leaving.until },
      };
    const rep = new LedgerStore(store).reputation(peerId);
    const reason = rep?.banned
      ? `banned from assignment: ${rep.reason}`
      : store.listModels().length === 0
        ? 'no model is registered yet'
        : 'no stage needs this peer now (or its wallet already holds one)';
    return { ...base, status: 'wait' as const, reason, retryMs: membership.heartbeatMs };
  }

  private modelOr404(id: string): ModelRecord {
    const model = this.o.store.getModel(id);
    if (!model) throw new HttpError('notFound', `unknown model ${JSON.stringify(id.slice(0, 80))}`);
    return model;
  }
}
