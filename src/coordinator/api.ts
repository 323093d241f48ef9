import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, storeFailure } from './errors.ts';
import { CorpusData } from './corpus-data.ts';
import type { Credits } from './credits.ts';
import { checkJson, isStateChanging, RateLimited, sameSecret, type HttpRules } from './http-guard.ts';
import type { LiveHub } from './live.ts';
import type { CoordinatorService } from './service.ts';
import type { Teams } from './teams.ts';
import type { LedgerService } from './ledger.ts';
import type { OpenAiApi } from './openai.ts';
import type { Payments } from './payments.ts';
import type { Settlement } from './settlement.ts';
import type { Logger } from './types.ts';
import { queryInt } from './validate.ts';

/** HTTP/JSON routing over node:http (documented in API.md). */

export interface ApiOptions {
  /** Largest request body accepted (bytes); larger ones get 413. */
  maxBodyBytes: number;
  log: Logger;
  /** Host, Origin, rate limits and CORS (http-guard.ts), checked before any route. */
  rules: HttpRules;
  /** Where the corpus routes read from (default: a fresh in-memory cache). */
  corpus?: CorpusData;
  ledger: LedgerService;
  settlement: Settlement;
  /** The OpenAI-compatible inference API under /v1/ (raw body: requests are signed over it). */
  openai?: OpenAiApi;
  payments?: Payments;
  /** Bearer token of the admin routes (none: they answer 401). */
  adminToken?: string;
  teams: Teams;
  credits: Credits;
  live: LiveHub;
  /** GET /api/models/:id/verification (verification.ts). */
  verification: (modelId: string) => unknown;
}

/** A JSON answer, raw bytes (the corpus routes), or a stream the route writes itself (server-sent events). */
type Answer =
  | { status?: number; json: unknown }
  | { bytes: Uint8Array; type: string }
  | { stream: (req: IncomingMessage, res: ServerResponse, headers: Record<string, string>) => void };
type Handler = (ctx: {
  params: string[];
  query: URLSearchParams;
  body: unknown;
  headers: IncomingMessage['headers'];
}) => Answer | Promise<Answer>;

interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  handler: Handler;
}

function routes(svc: CoordinatorService, corpus: CorpusData, opts: ApiOptions): Route[] {
  const since = (q: URLSearchParams) => queryInt(q.get('since'), 'since', 0);
  const limit = (q: URLSearchParams) => queryInt(q.get('limit'), 'limit', 1000, 1000);
  const { ledger, settlement } = opts;
  const admin = (headers: IncomingMessage['headers']) => {
    if (!opts.adminToken || !sameSecret(headers.authorization, `Bearer ${opts.adminToken}`))
      throw new HttpError('unauthorized', 'closing an epoch needs the admin token (Authorization: Bearer …)');
  };
  const epochNo = (raw: string) => queryInt(raw, 'epoch', 0);
  return [
    {
      method: 'POST',
      pattern: /^\/api\/models\/([^/]+)\/receipts$/,
      handler: async ({ params, body }) => ({ json: await ledger.submitReceipts(params[0], body) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/epochs$/,
      handler: ({ params }) => ({ json: ledger.epochs(params[0]) }),
    },
    {
      method: 'POST',
      pattern: /^\/api\/models\/([^/]+)\/epochs$/,
      handler: async ({ params, body, headers }) => {
        admin(headers);
        const o = body as { epoch?: unknown };
        const expected = o && typeof o === 'object' && o.epoch !== undefined ? epochNo(String(o.epoch)) : undefined;
        const e = await settlement.close(params[0], expected);
        return { status: 201, json: ledger.epoch(params[0], e.epoch) };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/epochs\/(\d+)$/,
      handler: ({ params }) => ({ json: ledger.epoch(params[0], epochNo(params[1])) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/epochs\/(\d+)\/receipts$/,
      handler: ({ params, query }) => ({
        json: ledger.epochReceipts(params[0], epochNo(params[1]), since(query), limit(query)),
      }),
    },
    { method: 'GET', pattern: /^\/api\/chain$/, handler: () => ({ json: ledger.chainView() }) },
    {
      method: 'GET',
      pattern: /^\/api\/payers\/([^/]+)$/,
      handler: async ({ params }) => {
        if (!opts.payments) throw new HttpError('notFound', 'this coordinator serves no paid inference');
        const payer = ledger.nonce(params[0]).wallet;
        const a = await opts.payments.available(payer);
        return {
          json: {
            payer,
            deposit: a.deposit.toString(),
            uncharged: a.uncharged.toString(),
            inFlight: a.inFlight.toString(),
            available: a.available.toString(),
            usage: opts.payments.usageOf(payer),
          },
        };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/bindings$/,
      handler: async ({ body }) => ({ status: 201, json: await ledger.bind(body) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/peers\/([^/]+)\/binding$/,
      handler: ({ params }) => ({ json: ledger.bindingOf(params[0]) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/wallets\/([^/]+)\/nonce$/,
      handler: ({ params }) => ({ json: ledger.nonce(params[0]) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/wallets\/([^/]+)$/,
      handler: ({ params }) => ({ json: ledger.wallet(params[0]) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/live$/,
      handler: ({ params }) => ({ stream: (req, res, headers) => opts.live.open(params[0], req, res, headers) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/throughput$/,
      handler: ({ params, query }) => ({
        json: svc.throughput(params[0], query.get('since') === null ? null : since(query), limit(query)),
      }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/topology$/,
      handler: ({ params }) => ({ json: svc.topology(params[0]) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/verification$/,
      handler: ({ params }) => ({ json: opts.verification(params[0]) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/leaderboard$/,
      handler: ({ params, query }) => ({ json: opts.credits.leaderboard(params[0], query.get('by')) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/peers\/([^/]+)\/credits$/,
      handler: ({ params }) => ({ json: opts.credits.peer(params[0]) }),
    },
    { method: 'GET', pattern: /^\/api\/teams$/, handler: () => ({ json: opts.teams.list() }) },
    {
      method: 'POST',
      pattern: /^\/api\/teams$/,
      handler: ({ body }) => ({ status: 201, json: opts.teams.create(body) }),
    },
    {
      method: 'POST',
      pattern: /^\/api\/teams\/([^/]+)\/members$/,
      handler: async ({ params, body }) => ({ status: 201, json: await opts.teams.join(params[0], body) }),
    },
    { method: 'GET', pattern: /^\/api\/health$/, handler: () => ({ json: svc.health() }) },
    { method: 'GET', pattern: /^\/api\/models$/, handler: () => ({ json: svc.listModels() }) },
    {
      method: 'POST',
      pattern: /^\/api\/models$/,
      handler: ({ body }) => ({ status: 201, json: svc.registerModel(body) }),
    },
    { method: 'GET', pattern: /^\/api\/models\/([^/]+)$/, handler: ({ params }) => ({ json: svc.model(params[0]) }) },
    {
      method: 'POST',
      pattern: /^\/api\/models\/([^/]+)\/metrics$/,
      handler: ({ params, body }) => {
        const r = svc.reportMetric(params[0], body);
        return { status: r.duplicate ? 200 : 201, json: r };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/models\/([^/]+)\/metrics$/,
      handler: ({ params, query }) => ({ json: svc.metrics(params[0], since(query), limit(query)) }),
    },
    { method: 'POST', pattern: /^\/api\/peers\/join$/, handler: ({ body }) => ({ json: svc.join(body) }) },
    { method: 'POST', pattern: /^\/api\/peers\/heartbeat$/, handler: ({ body }) => ({ json: svc.heartbeat(body) }) },
    { method: 'POST', pattern: /^\/api\/peers\/leave$/, handler: ({ body }) => ({ json: svc.leave(body) }) },
    { method: 'GET', pattern: /^\/api\/peers$/, handler: () => ({ json: svc.listPeers() }) },
    {
      method: 'GET',
      pattern: /^\/api\/events$/,
      handler: ({ query }) => ({ json: svc.events(since(query), limit(query)) }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/data\/brown\/([^/]+)\/tokenizer\.json$/,
      handler: async ({ params }) => ({
        bytes: await corpus.tokenizer(params[0]),
        type: 'application/json; charset=utf-8',
      }),
    },
    {
      method: 'GET',
      pattern: /^\/api\/data\/brown\/([^/]+)\/(?!tokenizer\.json$)([^/]+)$/,
      handler: async ({ params }) => ({
        bytes: await corpus.tokens(params[0], params[1]),
        type: 'application/octet-stream',
      }),
    },
  ];
}

/** Reads the body, refusing more than `max` bytes (by Content-Length up front, else while streaming). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max)
    return Promise.reject(new HttpError('payloadTooLarge', `body of ${declared} bytes exceeds the ${max}-byte limit`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new HttpError('payloadTooLarge', `body exceeds the ${max}-byte limit`));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJson(raw: Buffer): unknown {
  const text = raw.toString('utf8');
  if (text.trim() === '') throw new HttpError('badRequest', 'empty body: send a JSON object');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError('badRequest', `malformed JSON: ${(e as Error).message}`);
  }
}

function send(res: ServerResponse, status: number, json: unknown, extra: Record<string, string> = {}): void {
  const body = JSON.stringify(json);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    ...extra,
  });
  res.end(body);
}

function sendBytes(res: ServerResponse, bytes: Uint8Array, type: string, extra: Record<string, string>): void {
  res.writeHead(200, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': bytes.byteLength,
    ...extra,
  });
  res.end(bytes);
}

/** The request handler: routes, answers JSON, and turns every failure into a logged error answer. */
export function createApiHandler(
  svc: CoordinatorService,
  opts: ApiOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const table = routes(svc, opts.corpus ?? new CorpusData(), opts);
  return (req, res) => {
    void handle(req, res).catch((e) =>
      opts.log('error', `unhandled failure answering ${req.method} ${req.url}: ${(e as Error).stack ?? e}`),
    );
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://coordinator');
    const cors = opts.rules.corsHeaders(req.headers.origin);
    let bodyRead = false;
    try {
      opts.rules.check(req, method, url.pathname);
      if (method === 'OPTIONS') {
        res.writeHead(204, {
          ...cors,
          'access-control-allow-methods': 'GET, POST',
          'access-control-allow-headers':
            'content-type, authorization, x-tessera-address, x-tessera-nonce, x-tessera-signature',
        });
        res.end();
        return;
      }
      if (url.pathname.startsWith('/v1/') && opts.openai) {
        for (const [k, v] of Object.entries(cors)) res.setHeader(k, v);
        checkJson(req, method);
        const raw = method === 'POST' ? await readBody(req, opts.maxBodyBytes) : Buffer.alloc(0);
        bodyRead = true;
        await opts.openai.handle(req, res, url.pathname, raw);
        return;
      }
      const matching = table.filter((r) => r.pattern.test(url.pathname));
      if (matching.length === 0) throw new HttpError('notFound', `no route ${url.pathname}`);
      const route = matching.find((r) => r.method === method);
      if (!route)
        throw new HttpError(
          'methodNotAllowed',
          `${method} ${url.pathname}: use ${matching.map((r) => r.method).join(' or ')}`,
        );
      const params = url.pathname.match(route.pattern)!.slice(1).map(decode);
      checkJson(req, method);
      const raw = method === 'POST' ? await readBody(req, opts.maxBodyBytes) : undefined;
      bodyRead = true;
      const body = raw && parseJson(raw);
      const out = await route.handler({ params, query: url.searchParams, body, headers: req.headers });
      if ('stream' in out) out.stream(req, res, cors);
      else if ('bytes' in out) sendBytes(res, out.bytes, out.type, cors);
      else send(res, out.status ?? 200, out.json, cors);
    } catch (thrown) {
      const e = thrown instanceof HttpError ? thrown : (storeFailure(thrown) ?? thrown);
      const known = e instanceof HttpError;
      const status = known ? e.status : 500;
      const message = known ? e.message : `internal error: ${(e as Error).message}`;
      // A flood of 429s is logged once per client and burst, not once per request.
      if (!(e instanceof RateLimited && !e.first))
        opts.log(
          status >= 500 ? 'error' : 'warn',
          `${method} ${url.pathname} → ${status}: ${message}`,
          known ? undefined : { stack: (e as Error).stack },
        );
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // A body we refused to read (too large, or refused before reading: type, Host, Origin, rate) would cost us
      // reading it to keep the connection: close it after answering.
      const close: Record<string, string> =
        status === 413 || (!bodyRead && isStateChanging(method)) ? { connection: 'close' } : {};
      const retry: Record<string, string> = e instanceof RateLimited ? { 'retry-after': String(e.retryAfterS) } : {};
      send(res, status, { error: message, code: known ? e.code : 'internal' }, { ...cors, ...close, ...retry });
    }
  }
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError('badRequest', `malformed path segment ${JSON.stringify(segment.slice(0, 80))}`);
  }
}
