/**
 * Generation through a model's stage holders over `/tessera/infer/1.0.0` (serve.ts): the prompt goes to a
 * holder of stage 0 as token ids, each stage's activations go to a holder of the next, and the last stage
 * samples the next token, which starts the next round. Every holder keeps a KV cache for the session, so each
 * round after the prompt moves one position. A holder that fails mid-generation is replaced by a replica of
 * its stage: the whole pipeline re-runs the sequence so far under a new session (the replica has no cache).
 * This side only ever sees activations and tokens.
 */
import type { Libp2p } from '@libp2p/interface';
import { abortOn, openStream, StreamReader, withTimeout, writeBytes, writeJson } from '../net/stream-io.ts';
import type { Generated, GenerateRequest, InferenceBackend } from './backend.ts';
import { INFER_PROTOCOL, type InferReply, type InferRequest } from './serve.ts';

export interface SwarmBackendOptions {
  node: Libp2p;
  /** Alive holders of each stage of the model, replica 0 first; empty stages make the model unavailable. */
  holders: (modelId: string) => { dModel: number; stages: string[][] } | null;
  log?: (line: string) => void;
  /** Per hop. */
  timeoutMs?: number;
  /** Holders replaced before a generation fails (default 2). */
  retries?: number;
}

export class SwarmInference implements InferenceBackend {
  readonly stats = { generations: 0, tokens: 0, hops: 0, retries: 0 };
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
      let hop = -1;
      try {
        // The sequence so far: the prompt, plus what was generated before a holder failed.
        let input: number[] = [...req.prompt, ...tokens];
        while (tokens.length < req.maxTokens) {
          let x: { rows: number; payload: Uint8Array } | undefined;
          let token: number | undefined;
          for (let s = 0; s < route.length; s++) {
            hop = s;
            req.signal.throwIfAborted();
            const r = await this.call(route[s], {
              model: req.modelId, stage: s, session, ...(s === 0 ? { ids: input } : { rows: x!.rows }),
              ...(s === route.length - 1 ? { sampling: req.sampling } : {}),
            }, s === 0 ? undefined : x!.payload, plan.dModel);
            if (s === route.length - 1) token = r.token;
            else x = { rows: r.rows!, payload: r.payload! };
          }
          if (token === undefined) throw new Error('the last stage answered without a token');
          tokens.push(token);
          this.stats.tokens++;
          if (onToken(token) === true) return await this.finish(route, req.modelId, session, tokens, 'stop');
          input = [token];
        }
        return await this.finish(route, req.modelId, session, tokens, 'length');
      } catch (e) {
        if (req.signal.aborted || attempt >= (this.o.retries ?? 2) || hop < 0) throw e;
        failed.add(route[hop]);
        this.stats.retries++;
        this.o.log?.(`inference: stage ${hop} holder ${route[hop].slice(-6)} failed (${(e as Error).message}); retrying on a replica`);
        void this.endAll(route, req.modelId, session);
      }
    }
  }

  private noHolder(stage: number): never {
    throw new Error(`stage ${stage} has no working holder left`);
  }

  private async finish(route: string[], model: string, session: string, tokens: number[], finish: Generated['finish']): Promise<Generated> {
    void this.endAll(route, model, session);
    return { tokens, finish };
  }

  /** Frees the session's caches (best effort: an idle session is evicted anyway). */
  private async endAll(route: string[], model: string, session: string): Promise<void> {
    await Promise.allSettled(route.map((p, stage) => this.call(p, { model, stage, session, end: true }, undefined, 0)));
  }

  private async call(peer: string, req: InferRequest, payload: Uint8Array | undefined, dModel: number): Promise<{ token?: number; rows?: number; payload?: Uint8Array }> {
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
      if (!reply.ok) throw new Error(`${peer.slice(-6)} refused: ${String((reply as { error?: unknown }).error).slice(0, 300)}`);
      if (req.end) return {};
      if (reply.rows !== undefined) {
        if (!Number.isInteger(reply.rows) || reply.rows < 1) throw new Error(`${peer.slice(-6)} announced ${reply.rows} rows`);
        return { rows: reply.rows, payload: await reader.read(reply.rows * dModel * 4, 'activations') };
      }
      if (!Number.isInteger(reply.token)) throw new Error(`${peer.slice(-6)} answered neither activations nor a token`);
      return { token: reply.token };
    } finally {
      release();
      reader.dispose();
    }
  }
}
