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
import type { RelayInfo } from '../wire/index.ts';

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

  constructor(opts: ServiceOptions) {
    this.o = opts;
    this.startedAt = opts.now();
    this.links = new Links(opts.store);
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
      models: this.o.store.listModels().map((m) => modelSummary(this.o.store, m, this.o.referenceFlopsPerToken)),
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
    return { model: modelDetail(store, model, this.o.referenceFlopsPerToken) };
  }

  model(id: string) {
    return { model: modelDetail(this.o.store, this.modelOr404(id), this.o.referenceFlopsPerToken) };
  }

  join(body: unknown) {
    const o = object(body, 'join');
    onlyKeys(o, 'join', ['peerId', 'kind', 'tokensPerSecond', 'preferModel']);
    const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
    const kind = oneOf(o.kind, 'kind', PEER_KINDS);
    const tokensPerSecond = finite(o.tokensPerSecond, 'tokensPerSecond', 0, true);
    const preferModel =
      o.preferModel === undefined || o.preferModel === null ? null : string(o.preferModel, 'preferModel');
    if (preferModel !== null) this.modelOr404(preferModel);
    this.o.membership.join({ peerId, kind, tokensPerSecond, preferModel });
    return this.answer(peerId);
  }

  heartbeat(body: unknown) {
    const o = object(body, 'heartbeat');
    onlyKeys(o, 'heartbeat', ['peerId', 'stats', 'links']);
    const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
    const links = o.links === undefined ? [] : parseLinks(o.links, peerId);
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

  leave(body: unknown) {
    const o = object(body, 'leave');
    onlyKeys(o, 'leave', ['peerId']);
    const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
    this.o.membership.leave(peerId);
    this.stats.delete(peerId);
    return { ok: true, peerId };
  }

  listPeers() {
    const { store } = this.o;
    return { peers: store.listPeers().map((p) => peerView(store, p, this.stats.get(p.peerId))) };
  }

  /**
   * A worker's report of a step: `{ step, loss, tokens?, kind?: 'train' | 'val', status?: 'done' | 'failed' |
   * 'running', peerId? }`. Each (step, kind) is recorded once: a replay answers the stored record with duplicate: true.
   */
  reportMetric(modelId: string, body: unknown) {
    const { store } = this.o;
    this.modelOr404(modelId);
    const o = object(body, 'metric');
    onlyKeys(o, 'metric', ['step', 'loss', 'tokens', 'kind', 'status', 'peerId']);
    const step = integer(o.step, 'step', 0);
    const kind = o.kind === undefined ? 'train' : oneOf(o.kind, 'kind', METRIC_KINDS);
    const status = o.status === undefined ? 'done' : oneOf(o.status, 'status', ['done', 'failed', 'running'] as const);
    const tokens = o.tokens === undefined ? null : integer(o.tokens, 'tokens', 0);
    if (o.peerId !== undefined) {
      const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
      if (!store.assignmentsOf(peerId).some((a) => a.modelId === modelId))
        throw new HttpError('forbidden', `peer ${peerId} holds no stage of model ${modelId}`);
    }
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
    if (mine) return { ...base, status: 'assigned' as const, assignment: assignmentView(store, mine) };
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
