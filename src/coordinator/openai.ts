/**
 * The OpenAI-compatible inference API: `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`
 * (JSON or server-sent events), answered in OpenAI's shapes so the official `openai` client works unchanged
 * (give it `signedFetch`: every paid request is signed by the requester's Ethereum key). Generation itself is an
 * InferenceBackend's — the stage holders of the model, never weights held here.
 *
 * Chat format (the Brown tokenizer has no chat template): each message becomes a line `Role: content`
 * ("System", "User", "Assistant") and the prompt ends with `Assistant:`; generation stops at a newline that
 * starts another turn.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Address } from 'viem';
import { loadTokenizer } from '../data/brown-node.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import type { InferenceBackend } from '../infer/backend.ts';
import type { SamplingOptions } from '../infer/sample.ts';
import { RequestAuthError, verifyRequest } from '../ledger/request-auth.ts';
import { HttpError } from './errors.ts';
import { costOf, weiPerKiloToken, type Payments } from './payments.ts';
import type { Store } from './store.ts';
import type { Logger, ModelRecord } from './types.ts';

export type { GenerateRequest, InferenceBackend } from '../infer/backend.ts';

export interface OpenAiOptions {
  store: Store;
  payments: Payments;
  backend: () => InferenceBackend | null;
  log: Logger;
  now: () => number;
}

const CHAT_ROLES: Record<string, string> = { system: 'System', user: 'User', assistant: 'Assistant' };
const TURN = /\n(System|User|Assistant):/;

export class OpenAiApi {
  private readonly o: OpenAiOptions;
  private readonly tokenizers = new Map<number, Tokenizer>();

  constructor(o: OpenAiOptions) {
    this.o = o;
  }

  private tokenizer(vocab: number): Tokenizer {
    let t = this.tokenizers.get(vocab);
    if (!t) this.tokenizers.set(vocab, (t = loadTokenizer(vocab)));
    return t;
  }

  /** Handles /v1/* (the caller has read the body); answers errors in OpenAI's `{ error: { … } }` shape. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, body: Buffer): Promise<void> {
    try {
      if (path === '/v1/models' && req.method === 'GET') return json(res, 200, this.models());
      const m = /^\/v1\/models\/([^/]+)$/.exec(path);
      if (m && req.method === 'GET') return json(res, 200, this.modelView(this.model(decodeURIComponent(m[1]))));
      if ((path === '/v1/completions' || path === '/v1/chat/completions') && req.method === 'POST') {
        return await this.complete(req, res, path, body, path === '/v1/chat/completions');
      }
      throw new HttpError('notFound', `no route ${req.method} ${path}`);
    } catch (e) {
      const known = e instanceof HttpError;
      const status = known ? e.status : 500;
      const message = known ? e.message : `internal error: ${(e as Error).message}`;
      this.o.log(status >= 500 ? 'error' : 'warn', `${req.method} ${path} → ${status}: ${message}`);
      if (res.headersSent) {
        sse(res, { error: { message, type: known ? e.code : 'internal', code: status } });
        res.end();
      } else
        json(res, status, {
          error: { message, type: known ? e.code : 'internal', param: null, code: known ? e.code : 'internal' },
        });
    }
  }

  private model(id: string): ModelRecord {
    const m = this.o.store.getModel(id);
    if (!m)
      throw new HttpError('notFound', `unknown model ${JSON.stringify(id.slice(0, 80))}: GET /v1/models lists them`);
    return m;
  }

  private modelView(m: ModelRecord) {
    return {
      id: m.id,
      object: 'model',
      created: Math.floor(m.createdAt / 1000),
      owned_by: 'tessera',
      name: m.name,
      context_length: m.spec.model.context,
      price: { eth_per_1k_tokens: m.spec.pricePer1kTokens, wei_per_1k_tokens: weiPerKiloToken(m).toString() },
    };
  }

  private models() {
    return { object: 'list', data: this.o.store.listModels().map((m) => this.modelView(m)) };
  }

  private async complete(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    raw: Buffer,
    chat: boolean,
  ): Promise<void> {
    let payer: Address;
    let nonce: bigint;
    try {
      ({ address: payer, nonce } = await verifyRequest(req.headers, 'POST', path, raw));
    } catch (e) {
      if (e instanceof RequestAuthError) throw new HttpError('unauthorized', e.message);
      throw e;
    }
    const body = parseBody(raw);
    const model = this.model(str(body.model, 'model'));
    const tok = this.tokenizer(model.spec.model.vocab);
    const promptText = chat ? chatPrompt(body.messages) : str(body.prompt, 'prompt', true);
    const prompt = tok.encode(promptText);
    const maxTokens = int(body.max_tokens ?? body.max_completion_tokens, 'max_tokens', 16, 1, model.spec.model.context);
    if (prompt.length === 0) throw new HttpError('badRequest', 'prompt: empty after tokenization');
    if (prompt.length + maxTokens > model.spec.model.context) {
      throw new HttpError(
        'badRequest',
        `prompt of ${prompt.length} tokens + max_tokens ${maxTokens} exceeds the context of ` +
          `${model.spec.model.context} tokens of ${model.id}`,
      );
    }
    if (body.n !== undefined && body.n !== 1) throw new HttpError('badRequest', 'n: only 1 completion per request');
    const sampling: SamplingOptions = {
      temperature: num(body.temperature, 'temperature', 1, 0, 2),
      topP: body.top_p === undefined ? undefined : num(body.top_p, 'top_p', 1, 0, 1),
      topK: body.top_k === undefined ? undefined : int(body.top_k, 'top_k', 0, 1, model.spec.model.vocab),
      seed: body.seed === undefined ? undefined : int(body.seed, 'seed', 0, 0, 2 ** 31 - 1),
    };
    const stops = stopList(body.stop);
    const stream = body.stream === true;
    const includeUsage =
      stream &&
      typeof body.stream_options === 'object' &&
      (body.stream_options as { include_usage?: unknown })?.include_usage === true;
    const backend = this.o.backend();
    if (!backend) throw new HttpError('unavailable', `no stage holders serve inference for ${model.id} right now`);
    this.o.payments.useNonce(payer, nonce);
    const hold = await this.o.payments.hold(payer, costOf(model, prompt.length + maxTokens));
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
    const created = Math.floor(this.o.now() / 1000);
    const ctl = new AbortController();
    res.on('close', () => !res.writableFinished && ctl.abort(new Error('client went away')));
    let text = '';
    const emitted: number[] = [];
    const ended = (t: string) => (chat && TURN.test(t)) || stops.some((s) => t.includes(s));
    try {
      if (stream) {
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          connection: 'keep-alive',
        });
        if (chat) sse(res, chunk(id, created, model.id, chat, { role: 'assistant', content: '' }, null));
      }
      // A token that ends the turn (or hits a stop string) is not sent: generation stops before it.
      const out = await backend.generate(
        { modelId: model.id, prompt, maxTokens, sampling, signal: ctl.signal },
        (t) => {
          const next = tok.decode([...emitted, t]);
          if (ended(next)) return true;
          emitted.push(t);
          const piece = next.slice(text.length);
          text = next;
          if (stream && piece) sse(res, chunk(id, created, model.id, chat, chat ? { content: piece } : piece, null));
          return false;
        },
      );
      const finish = out.finish;
      // Billed: every token the stages computed, the refused stop token included (it cost the same work).
      const usage = {
        prompt_tokens: prompt.length,
        completion_tokens: out.tokens.length,
        total_tokens: prompt.length + out.tokens.length,
      };
      this.o.payments.commit(hold, {
        requestId: id,
        payer,
        modelId: model.id,
        promptTokens: usage.prompt_tokens,
        completionTokens: usage.completion_tokens,
        cost: costOf(model, usage.total_tokens),
      });
      const finalText = tok.decode(emitted);
      if (stream) {
        sse(res, chunk(id, created, model.id, chat, chat ? {} : '', finish));
        if (includeUsage)
          sse(res, {
            id,
            object: chat ? 'chat.completion.chunk' : 'text_completion',
            created,
            model: model.id,
            choices: [],
            usage,
          });
        res.write('data: [DONE]\n\n');
        res.end();
      } else if (chat) {
        json(res, 200, {
          id,
          object: 'chat.completion',
          created,
          model: model.id,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: finalText, refusal: null },
              logprobs: null,
              finish_reason: finish,
            },
          ],
          usage,
        });
      } else {
        json(res, 200, {
          id,
          object: 'text_completion',
          created,
          model: model.id,
          choices: [{ index: 0, text: finalText, logprobs: null, finish_reason: finish }],
          usage,
        });
      }
    } catch (e) {
      // A failed request costs nothing.
      this.o.payments.release(hold);
      if (e instanceof HttpError) throw e;
      throw new HttpError('unavailable', `generation failed (nothing was charged): ${(e as Error).message}`);
    }
  }
}

function chunk(
  id: string,
  created: number,
  model: string,
  chat: boolean,
  piece: string | Record<string, string>,
  finish: string | null,
) {
  return chat
    ? {
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        choices: [{ index: 0, delta: piece, logprobs: null, finish_reason: finish }],
      }
    : {
        id,
        object: 'text_completion',
        created,
        model,
        choices: [{ index: 0, text: piece, logprobs: null, finish_reason: finish }],
      };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function sse(res: ServerResponse, body: unknown): void {
  res.write(`data: ${JSON.stringify(body)}\n\n`);
}

function parseBody(raw: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new HttpError('badRequest', `malformed JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new HttpError('badRequest', 'the body must be a JSON object');
  return v as Record<string, unknown>;
}

function str(v: unknown, name: string, allowEmpty = false): string {
  if (typeof v !== 'string' || (!allowEmpty && v === '')) throw new HttpError('badRequest', `${name} must be a string`);
  if (v.length > 100_000) throw new HttpError('badRequest', `${name} is longer than 100,000 characters`);
  return v;
}

function num(v: unknown, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max)
    throw new HttpError('badRequest', `${name} must be a number in [${min}, ${max}]`);
  return v;
}

function int(v: unknown, name: string, dflt: number, min: number, max: number): number {
  const x = num(v, name, dflt, min, max);
  if (!Number.isInteger(x)) throw new HttpError('badRequest', `${name} must be an integer in [${min}, ${max}]`);
  return x;
}

function stopList(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== 'string' || s === ''))
    throw new HttpError('badRequest', 'stop must be a string or up to 4 non-empty strings');
  return list as string[];
}

/** Messages → the documented plain-text chat format. */
export function chatPrompt(messages: unknown): string {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new HttpError('badRequest', 'messages must be a non-empty array');
  const lines = messages.map((m, i) => {
    const o = m as { role?: unknown; content?: unknown };
    const role = typeof o?.role === 'string' ? CHAT_ROLES[o.role] : undefined;
    if (!role) throw new HttpError('badRequest', `messages[${i}].role must be system, user or assistant`);
    if (typeof o.content !== 'string') throw new HttpError('badRequest', `messages[${i}].content must be a string`);
    return `${role}: ${o.content}`;
  });
  return `${lines.join('\n')}\nAssistant:`;
}
