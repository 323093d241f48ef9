import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApiHandler } from './api.ts';
import { ChainLink, type ChainLinkOptions } from './chain-link.ts';
import { CorpusData } from './corpus-data.ts';
import { Credits } from './credits.ts';
import { Validation, type EvaluateFn, type EvaluationOptions } from './evaluation.ts';
import { HttpRules, type RateLimits } from './http-guard.ts';
import { LiveHub } from './live.ts';
import { Teams } from './teams.ts';
import { verificationView } from './verification.ts';
import { LedgerService } from './ledger.ts';
import { LedgerStore } from './ledger-store.ts';
import { Settlement } from './settlement.ts';
import { OpenAiApi, type InferenceBackend } from './openai.ts';
import { Payments } from './payments.ts';
import { Membership } from './membership.ts';
import { rebalance } from './placement.ts';
import { REFERENCE_FLOPS_PER_TOKEN } from './registry.ts';
import { CoordinatorService, type RelayInfo } from './service.ts';
import { Store } from './store.ts';
import { consoleLogger, type Logger } from './types.ts';
import { MAX_BODY_BYTES } from '../wire/index.ts';

/** A running relay: its addresses go to peers; stop() is called when the coordinator stops. */
export interface RelayHandle extends RelayInfo {
  stop?: () => void | Promise<void>;
}

export interface CoordinatorOptions {
  /** SQLite file (created if missing); ':memory:' for a throwaway coordinator. */
  dbPath: string;
  /** Listen address (default 127.0.0.1: only this machine). */
  host?: string;
  /** Listen port (default 0: any free port; read `url`). */
  port?: number;
  heartbeatMs?: number;
  /** The libp2p relay peers signal through: a running one, or a function that starts it (src/net provides it). */
  relay?: RelayHandle | (() => Promise<RelayHandle>);
  /** Largest request body (default 64 KiB). */
  maxBodyBytes?: number;
  /**
   * Browser origins (`http://host:port`) allowed to write to the API and read it cross-origin (CORS); default none:
   * only the coordinator's own origin ('*' is refused). A page served through a proxy of /api is same-origin.
   */
  allowedOrigins?: string[];
  /** More Host names the API answers to (`host` or `host:port`), besides the listen address's (http-guard.ts). */
  allowedHosts?: string[];
  /** Per-IP token buckets (default DEFAULT_RATE_LIMITS: generous); tests tighten them. */
  rateLimits?: Partial<RateLimits>;
  /** FLOPs per token of the workload peers time for `tokensPerSecond` (default: REFERENCE_CONFIG's). */
  referenceFlopsPerToken?: number;
  log?: Logger;
  now?: () => number;
  /** The chain the ledger settles on (none: epochs settle in the database only, roots wait to be posted). */
  chain?: Omit<ChainLinkOptions, 'log'>;
  /** Close an epoch for every model with new finished steps this often (default: only on request). */
  settleEveryMs?: number;
  /** Strikes before a caught peer is dropped from assignment (default 2). */
  banAfter?: number;
  /** Bearer token for admin routes (closing an epoch); none: those routes answer 401. */
  adminToken?: string;
  /** Who generates for /v1/ requests (the stage holders); settable later with setInferenceBackend. */
  inference?: InferenceBackend;
  /**
   * Validation loss through the stage holders (evaluation.ts); settable later with setEvaluator. None: no 'val'
   * metrics.
   */
  evaluate?: EvaluateFn;
  /** How often validation runs (default every 10 steps, at most every 20 s) and on how many sequences. */
  evaluation?: EvaluationOptions;
  /** Most GET /api/models/:id/live streams open at once (default 100). */
  maxLiveClients?: number;
}

/**
 * The coordinator process: SQLite state, membership sweeps and the HTTP/JSON API. A restart on the same
 * database resumes: models, peers, assignments, steps, metrics and events are all read back, and peers that
 * were alive get a fresh heartbeat grace period instead of being declared gone for the downtime.
 */
export class Coordinator {
  readonly url: string;
  readonly store: Store;
  readonly membership: Membership;
  readonly service: CoordinatorService;
  readonly relay: RelayHandle | null;
  readonly ledger: LedgerService;
  readonly settlement: Settlement;
  readonly chain: ChainLink | null;
  readonly payments: Payments;
  private inference: InferenceBackend | null = null;
  private evaluate: EvaluateFn | null = null;
  private live: LiveHub | null = null;
  private validation: Validation | null = null;
  private chargeTimer: ReturnType<typeof setInterval> | null = null;
  private readonly server: Server;
  private stopped = false;

  private constructor(
    url: string,
    store: Store,
    membership: Membership,
    service: CoordinatorService,
    relay: RelayHandle | null,
    server: Server,
    ledger: LedgerService,
    settlement: Settlement,
    chain: ChainLink | null,
    payments: Payments,
  ) {
    this.payments = payments;
    this.url = url;
    this.store = store;
    this.membership = membership;
    this.service = service;
    this.relay = relay;
    this.server = server;
    this.ledger = ledger;
    this.settlement = settlement;
    this.chain = chain;
  }

  static async start(opts: CoordinatorOptions): Promise<Coordinator> {
    const log = opts.log ?? consoleLogger;
    const now = opts.now ?? Date.now;
    const store = Store.open(opts.dbPath);
    let relay: RelayHandle | null = null;
    try {
      const membership = new Membership({ store, heartbeatMs: opts.heartbeatMs, now, log });
      relay = typeof opts.relay === 'function' ? await opts.relay() : (opts.relay ?? null);
      const teams = new Teams({ store, now, log });
      const at = now();
      const resumed = store.touchAlivePeers(at);
      store.logEvent('start', { peersAlive: resumed, models: store.listModels().length }, at);
      rebalance(store, at, 'start', log);
      const service = new CoordinatorService({
        store,
        membership,
        now,
        log,
        relay: relay && { multiaddrs: [...relay.multiaddrs] },
        referenceFlopsPerToken: opts.referenceFlopsPerToken ?? REFERENCE_FLOPS_PER_TOKEN,
        teams,
      });
      const chain = opts.chain ? new ChainLink({ ...opts.chain, log }) : null;
      const ledgerStore = new LedgerStore(store);
      const ledger = new LedgerService({
        store,
        ledger: ledgerStore,
        now,
        log,
        chainId: opts.chain?.deployment.chainId ?? 31337,
        chain: () => chain?.info() ?? null,
      });
      const settlement = new Settlement({
        store,
        ledger: ledgerStore,
        now,
        log,
        poster: chain,
        banAfter: opts.banAfter,
      });
      service.onModelRegistered = (m) =>
        void chain
          ?.ensureModel(m.id, m.name)
          .catch((e) => log('error', `registering ${m.id} on chain: ${(e as Error).message}`));
      for (const m of store.listModels()) service.onModelRegistered(m);
      const payments = new Payments({ store, chain, log, now });
      // The database against the chain before any timer sends: queued ahead of settling and charging, logged.
      if (chain) {
        void settlement.reconcile();
        void payments.reconcile();
      }
      let self: Coordinator | undefined;
      const openai = new OpenAiApi({
        store,
        payments,
        log,
        now,
        backend: () => self?.inference ?? opts.inference ?? null,
      });
      // The Researcher and Volunteer views: credits, live streams, validation loss.
      const live = new LiveHub({
        source: { snapshot: (id) => service.liveSnapshot(id), topology: (id) => service.topology(id) },
        log,
        maxClients: opts.maxLiveClients,
      });
      const corpus = new CorpusData();
      const validation = new Validation(
        {
          store,
          evaluate: () => self?.evaluate ?? opts.evaluate ?? null,
          valSplit: (vocab) => corpus.tokens(String(vocab), 'val'),
          record: (id, step, loss) => service.reportMetric(id, { step, loss, kind: 'val' }),
          now,
          log,
        },
        opts.evaluation,
      );
      service.onMetric((m, step) => {
        live.metric(m);
        if (!step) return;
        const point = store.throughput(m.modelId, step.step - 1, 1).find((p) => p.step === step.step);
        if (point) live.throughput(m.modelId, point);
        validation.onTrainStep(m.modelId, step.step);
      });
      const host = opts.host ?? '127.0.0.1';
      const rules = new HttpRules({
        listenHost: host,
        allowedHosts: opts.allowedHosts,
        allowedOrigins: opts.allowedOrigins,
        rateLimits: opts.rateLimits,
      });
      const server = createServer(
        createApiHandler(service, {
          maxBodyBytes: opts.maxBodyBytes ?? MAX_BODY_BYTES,
          log,
          rules,
          ledger,
          settlement,
          adminToken: opts.adminToken,
          openai,
          payments,
          corpus,
          teams,
          credits: new Credits({ store, teams, now }),
          live,
          verification: (id) => verificationView(store, ledgerStore, id),
        }),
      );
      server.on('clientError', (err, socket) => {
        log('warn', `malformed HTTP request: ${err.message}`);
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
        else socket.destroy();
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port ?? 0, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const { port } = server.address() as AddressInfo;
      const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
      membership.start();
      if (opts.settleEveryMs) settlement.start(opts.settleEveryMs);
      log('info', `listening on ${url} (database ${opts.dbPath}, ${resumed} peer(s) resumed)`);
      self = new Coordinator(url, store, membership, service, relay, server, ledger, settlement, chain, payments);
      self.live = live;
      self.validation = validation;
      if (opts.inference) self.setInferenceBackend(opts.inference);
      // Metered inference is charged on chain as often as epochs settle.
      if (opts.settleEveryMs) self.chargeTimer = setInterval(() => void payments.chargeUsage(), opts.settleEveryMs);
      return self;
    } catch (e) {
      await relay?.stop?.();
      store.close();
      throw e;
    }
  }

  setInferenceBackend(b: InferenceBackend | null): void {
    this.inference = b;
  }

  /** Sets (or clears) the validation-loss function (evaluation.ts); it runs every few training steps from then on. */
  setEvaluator(fn: EvaluateFn | null): void {
    this.evaluate = fn;
  }

  /** Stops sweeping and serving, stops the relay, closes the database. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.membership.stop();
    this.settlement.stop();
    this.validation?.stop();
    this.live?.stop();
    await this.settlement.idle();
    await this.validation?.idle();
    if (this.chargeTimer) clearInterval(this.chargeTimer);
    await this.payments.idle();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.relay?.stop?.();
    this.store.close();
  }
}
