/**
 * Generation through a model's stage holders over `/tessera/infer/1.0.0` (serve.ts): the prompt goes to a
 * holder of stage 0 as token ids, each stage's activations go to a holder of the next, and the last stage
 * samples the next token, which starts the next round. Every holder keeps a KV cache for the session, so each
 * round after the prompt moves one position. A holder that fails mid-generation is replaced by a replica of
 * its stage: the whole pipeline re-runs the sequence so far under a new session (the replica has no cache).
 * This side only ever sees activations and tokens.
 *
 * Every hop is numbered (a random 48-bit unit) and answered with the holder's signed receipt, which is checked
 * against the bytes sent and received (hop-receipt.ts) and handed to `onReceipt` (the coordinator's ledger). For
 * a share `auditFraction` of (generation, stage) pairs whose stage has another holder, every hop of that stage
 * is also replayed, in the background, on that replica under a shadow session: its infer-audit receipts are
 * compared with the served ones by sketch at settlement (src/ledger/verdict.ts). The served holder cannot tell:
 * its requests and answers are the same either way.
 */
import type { Libp2p } from '@libp2p/interface';
import { abortOn, openStream, StreamReader, withTimeout, writeBytes, writeJson } from '../net/stream-io.ts';
import type { SignedReceipt } from '../ledger/receipt.ts';
import type { Generated, GenerateRequest, InferenceBackend } from './backend.ts';
import { bytesOf, checkHopReceipt } from './hop-receipt.ts';
import { INFER_PROTOCOL, type InferReply, type InferRequest } from './serve.ts';

export interface ServingPlan {
  dModel: number;
  /** Alive holders of each stage, replica 0 first. */
  stages: string[][];
  /** FLOPs of stage `stage` over t new positions after `past` cached ones (what a hop's receipt must claim). */
  hopFlops?: (stage: number, t: number, past: number) => number;
}

export interface SwarmBackendOptions {
  node: Libp2p;
  /** Holders of the model's stages now (null: unknown model); an empty stage makes it unavailable. */
  holders: (modelId: string) => ServingPlan | null;
  log?: (line: string) => void;
  /** Per hop. */
  timeoutMs?: number;
  /** Holders replaced before a generation fails (default 2). */
  retries?: number;
  /** Records a hop's receipt (checked against the hop's bytes here); a rejection is logged, the hop stands. */
  onReceipt?: (modelId: string, receipt: SignedReceipt, flops: number) => Promise<void>;
  /** Share of (generation, stage) pairs replayed on another replica (default 0.1). */
  auditFraction?: number;
  /** The audit coin in [0, 1) (default Math.random: unpredictable to the holders). */
  coin?: () => number;
}

type HopAnswer = { token?: number; rows?: number; payload?: Uint8Array; loss?: number; receipt?: SignedReceipt };

/** A random unit number below 2^48 (exact as a JS number; collisions are negligible). */
function newUnit(): number {
  const b = crypto.getRandomValues(new Uint16Array(3));
  return b[0] * 2 ** 32 + b[1] * 2 ** 16 + b[2];
}

export class SwarmInference implements InferenceBackend {
  readonly stats = {
    generations: 0,
    tokens: 0,
    hops: 0,
    retries: 0,
    receipts: 0,
    receiptsRefused: 0,
    auditHops: 0,
    auditFailures: 0,
  };
  private readonly o: SwarmBackendOptions;

  constructor(o: SwarmBackendOptions) {
    this.o = o;
  }

  async generate(req: GenerateRequest, onToken: (id: number) => boolean | void): Promise<Generated> {
    const plan = this.o.holders(req.modelId);
    if (!plan) throw new Error(`model ${req.modelId} is not served`);
    const empty = plan.stages.findIndex((h) => h.length === 0);
    if (empty >= 0) throw new Error(`stage ${empty} of ${req.modelId} has no holder now`);
    const failed = new Set<string>();
    const tokens: number[] = [];
    this.stats.generations++;
    for (let attempt = 0; ; attempt++) {
      const route = plan.stages.map((h, s) => h.find((p) => !failed.has(p)) ?? this.noHolder(s));
      const session = `${crypto.randomUUID()}`;
      const audits = new ShadowRuns(
        this,
        req.modelId,
        session,
        plan,
        route,
        this.o.auditFraction ?? 0.1,
        this.o.coin ?? Math.random,
      );
      let hop = -1;
      try {
        // The sequence so far: the prompt, plus what was generated before a holder failed.
        let input: number[] = [...req.prompt, ...tokens];
        let past = 0;
        while (tokens.length < req.maxTokens) {
          const t = input.length;
          const { token } = await this.pass(
            route,
            plan.dModel,
            { model: req.modelId, session },
            input,
            { sampling: req.sampling },
            {
              unit: true,
              signal: req.signal,
              at: (s) => (hop = s),
              done: (hopReq, sent, r) => {
                void this.record(plan, hopReq, r, sent, t, past, false);
                audits.replay(hopReq.stage, hopReq, sent, t, past);
              },
            },
          );
          if (token === undefined) throw new Error('the last stage answered without a token');
          past += t;
          tokens.push(token);
          this.stats.tokens++;
          if (onToken(token) === true) return await this.finish(route, req.modelId, session, tokens, 'stop', audits);
          input = [token];
        }
        return await this.finish(route, req.modelId, session, tokens, 'length', audits);
      } catch (e) {
        void audits.end();
        if (req.signal.aborted || attempt >= (this.o.retries ?? 2) || hop < 0) throw e;
        failed.add(route[hop]);
        this.stats.retries++;
        this.o.log?.(
          `inference: stage ${hop} holder ${route[hop].slice(-6)} failed (${(e as Error).message}); retrying ` +
            `on a replica`,
        );
        void this.endAll(route, req.modelId, session);
      }
    }
  }

  /**
   * Mean cross-entropy of `targets` given `ids` (one forward through the holders, no sampling): the
   * coordinator's validation loss. Not receipted: it is the coordinator's own measurement, not paid work.
   */
  async evaluate(modelId: string, ids: Int32Array, targets: Int32Array, signal?: AbortSignal): Promise<number> {
    const plan = this.o.holders(modelId);
    if (!plan) throw new Error(`model ${modelId} is not served`);
    if (ids.length !== targets.length || ids.length === 0)
      throw new Error(`evaluate: ${ids.length} ids and ${targets.length} targets`);
    const route = plan.stages.map((h, s) => h[0] ?? this.noHolder(s));
    const session = `eval-${crypto.randomUUID()}`;
    try {
      const r = await this.pass(
        route,
        plan.dModel,
        { model: modelId, session },
        [...ids],
        { targets: [...targets] },
        { signal },
      );
      if (typeof r.loss !== 'number' || !Number.isFinite(r.loss))
        throw new Error(`the last stage answered no finite loss (${r.loss})`);
      return r.loss;
    } finally {
      void this.endAll(route, modelId, session);
    }
  }

  /**
   * One forward of `ids` through `route`: token ids into stage 0, each stage's activations into the next, `last`
   * added to the last stage's request; answers what the last stage answered. `at` learns which hop is under way
   * (failover), `done` sees each hop's request, the bytes sent with it and its answer; with `unit` each hop is
   * numbered for a receipt.
   */
  private async pass(
    route: readonly string[],
    dModel: number,
    base: Pick<InferRequest, 'model' | 'session'>,
    ids: number[],
    last: Partial<InferRequest>,
    o: {
      unit?: boolean;
      signal?: AbortSignal;
      at?: (stage: number) => void;
      done?: (req: InferRequest, sent: Uint8Array | undefined, r: HopAnswer) => void;
    } = {},
  ): Promise<HopAnswer> {
    let x: HopAnswer | undefined;
    for (let s = 0; s < route.length; s++) {
      o.at?.(s);
      o.signal?.throwIfAborted();
      const req: InferRequest = {
        ...base,
        stage: s,
        ...(o.unit ? { unit: newUnit() } : {}),
        ...(s === 0 ? { ids } : { rows: x!.rows }),
        ...(s === route.length - 1 ? last : {}),
      };
      const sent = s === 0 ? undefined : x!.payload;
      x = await this.call(route[s], req, sent, dModel);
      o.done?.(req, sent, x);
    }
    return x!;
  }

  /** Checks a hop's receipt against its bytes and hands it on (best effort: the hop's result stands either way). */
  async record(
    plan: ServingPlan,
    req: InferRequest,
    r: HopAnswer,
    sent: Uint8Array | undefined,
    t: number,
    past: number,
    audit: boolean,
  ): Promise<void> {
    if (!this.o.onReceipt || req.unit === undefined) return;
    const why = !r.receipt
      ? 'no receipt'
      : checkHopReceipt(r.receipt, {
          model: req.model,
          stage: req.stage,
          unit: req.unit,
          audit,
          input: sent ?? bytesOf(Int32Array.from(req.ids ?? [])),
          output: r.payload && new Float32Array(r.payload.slice().buffer),
        });
    const flops = plan.hopFlops?.(req.stage, t, past);
    try {
      if (why) throw new Error(why);
      if (flops === undefined) throw new Error('no FLOP count for this model');
      await this.o.onReceipt(req.model, r.receipt!, flops);
      this.stats.receipts++;
    } catch (e) {
      this.stats.receiptsRefused++;
      this.o.log?.(`inference receipt of stage ${req.stage} unit ${req.unit} refused: ${(e as Error).message}`);
    }
  }

  private noHolder(stage: number): never {
    throw new Error(`stage ${stage} has no working holder left`);
  }

  private async finish(
    route: string[],
    model: string,
    session: string,
    tokens: number[],
    finish: Generated['finish'],
    audits: ShadowRuns,
  ): Promise<Generated> {
    void this.endAll(route, model, session);
    void audits.end();
    return { tokens, finish };
  }

  /** Frees the session's caches (best effort: an idle session is evicted anyway). */
  private async endAll(route: readonly string[], model: string, session: string): Promise<void> {
    await Promise.allSettled(route.map((p, stage) => this.call(p, { model, stage, session, end: true }, undefined, 0)));
  }

  async call(peer: string, req: InferRequest, payload: Uint8Array | undefined, dModel: number): Promise<HopAnswer> {
    this.stats.hops++;
    const signal = withTimeout(this.o.timeoutMs ?? 30_000);
    const stream = await openStream(this.o.node, peer, INFER_PROTOCOL, signal);
    const release = abortOn(stream, signal);
    const reader = new StreamReader(stream);
    try {
      await writeJson(stream, req, signal);
      if (payload) await writeBytes(stream, payload, signal);
      await stream.close({ signal });
      const reply = (await reader.readJson(64 * 1024, 'inference reply')) as InferReply;
      if (!reply || typeof reply !== 'object') throw new Error(`${peer.slice(-6)} sent a reply that is not an object`);
      if (!reply.ok)
        throw new Error(`${peer.slice(-6)} refused: ${String((reply as { error?: unknown }).error).slice(0, 300)}`);
      if (req.end) return {};
      const receipt = reply.receipt;
      if (reply.rows !== undefined) {
        if (!Number.isInteger(reply.rows) || reply.rows < 1)
          throw new Error(`${peer.slice(-6)} announced ${reply.rows} rows`);
        return { rows: reply.rows, payload: await reader.read(reply.rows * dModel * 4, 'activations'), receipt };
      }
      if (req.targets) {
        if (typeof reply.loss !== 'number') throw new Error(`${peer.slice(-6)} answered no loss`);
        return { loss: reply.loss };
      }
      if (!Number.isInteger(reply.token)) throw new Error(`${peer.slice(-6)} answered neither activations nor a token`);
      return { token: reply.token, receipt };
    } finally {
      release();
      reader.dispose();
    }
  }
}

/**
 * The audit replays of one generation: for each stage picked by the coin (and having another holder), the same
 * hops, in order, on that replica under a shadow session. Runs behind the generation; failures are logged.
 */
class ShadowRuns {
  private readonly chains = new Map<number, { peer: string; session: string; done: Promise<void> }>();
  private readonly swarm: SwarmInference;
  private readonly model: string;
  private readonly plan: ServingPlan;

  constructor(
    swarm: SwarmInference,
    model: string,
    session: string,
    plan: ServingPlan,
    route: readonly string[],
    fraction: number,
    coin: () => number,
  ) {
    this.swarm = swarm;
    this.model = model;
    this.plan = plan;
    route.forEach((served, s) => {
      const others = plan.stages[s].filter((p) => p !== served);
      if (others.length === 0 || !(coin() < fraction)) return;
      this.chains.set(s, {
        peer: others[Math.floor(coin() * others.length) % others.length],
        session: `${session}/audit-${s}`,
        done: Promise.resolve(),
      });
    });
  }

  replay(stage: number, req: InferRequest, sent: Uint8Array | undefined, t: number, past: number): void {
    const c = this.chains.get(stage);
    if (!c) return;
    const shadow: InferRequest = { ...req, session: c.session, audit: true };
    c.done = c.done
      .then(async () => {
        try {
          this.swarm.stats.auditHops++;
          const r = await this.swarm.call(c.peer, shadow, sent, this.plan.dModel);
          await this.swarm.record(this.plan, shadow, r, sent, t, past, true);
        } catch (e) {
          this.swarm.stats.auditFailures++;
          this.chains.delete(stage); // its cache is out of step now: stop replaying this stage
          throw e;
        }
      })
      .catch(() => {});
  }

  /** Frees the shadow sessions once their replays are done. */
  async end(): Promise<void> {
    await Promise.all(
      [...this.chains.entries()].map(async ([stage, c]) => {
        await c.done;
        await this.swarm
          .call(c.peer, { model: this.model, stage, session: c.session, end: true }, undefined, 0)
          .catch(() => {});
      }),
    );
  }
}
