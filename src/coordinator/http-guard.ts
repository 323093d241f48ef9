import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { networkInterfaces } from 'node:os';
import { HttpError } from './errors.ts';

/**
 * HTTP hygiene in front of every route (API.md, "HTTP rules"): only JSON for writes (a text/plain POST is what a
 * foreign web page can send without a CORS preflight), Host and Origin checks (DNS rebinding, CSRF), per-IP token
 * buckets (429 with Retry-After), and a constant-time comparison for the admin token.
 */

/** A token bucket: `perSecond` refill, at most `burst` requests in a row. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

export interface RateLimits {
  /** Every request, per client IP. */
  perIp: RateLimit;
  /** POST /api/peers/join, per client IP (on top of perIp): joins are what a flood of invented peers costs. */
  join: RateLimit;
  /** POST /api/models, per client IP (on top of perIp): a registration can spend the owner key's gas. */
  register: RateLimit;
}

/**
 * Generous: `npm start` (four workers and the tabs behind the app's proxy, all from 127.0.0.1) and the test
 * suites never come near them; a script hammering the API does.
 */
export const DEFAULT_RATE_LIMITS: RateLimits = {
  perIp: { perSecond: 50, burst: 200 },
  join: { perSecond: 5, burst: 60 },
  register: { perSecond: 1, burst: 30 },
};

export interface HttpRulesOptions {
  /** The address the server listens on: its names (with the port a request arrived on) are allowed Hosts. */
  listenHost: string;
  /** More `host` or `host:port` values the API is reached under (a reverse proxy's name); no port: any port. */
  allowedHosts?: readonly string[];
  /** Browser origins (`http://app.example:5173`) allowed to write and read cross-origin (CORS); none by default. */
  allowedOrigins?: readonly string[];
  /** Token buckets, merged over DEFAULT_RATE_LIMITS (tests tighten them). */
  rateLimits?: Partial<RateLimits>;
  now?: () => number;
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];
const WILDCARD = new Set(['0.0.0.0', '::', '']);

/** True for methods that change state: they must be JSON and, from a browser, from an allowed origin. */
export const isStateChanging = (method: string): boolean => STATE_CHANGING.has(method);

/** Lowercase `host` or `[v6]`, as it appears in a Host header. */
function hostName(h: string): string {
  const lower = h.trim().toLowerCase();
  return lower.includes(':') && !lower.startsWith('[') ? `[${lower}]` : lower;
}

/** Splits a Host header value into name and port (undefined when absent); undefined when it is malformed. */
function splitHost(value: string): { name: string; port: string | undefined } | undefined {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?$/i.exec(value.trim());
  return m ? { name: m[1].toLowerCase(), port: m[2] } : undefined;
}

/** The names this machine is reached under when listening on every interface. */
function interfaceNames(): string[] {
  const names: string[] = [];
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) names.push(hostName(a.address.split('%')[0]));
  return names;
}

/** Refused by a token bucket: answered 429 with `Retry-After: <retryAfterS>`. */
export class RateLimited extends HttpError {
  readonly retryAfterS: number;
  /** The first refusal since this client was last let through: the one worth a log line (a flood logs once). */
  readonly first: boolean;
  constructor(message: string, retryAfterS: number, first: boolean) {
    super('tooManyRequests', message);
    this.retryAfterS = retryAfterS;
    this.first = first;
  }
}

/** Token buckets by key; full (idle) buckets are dropped so a stream of one-off IPs does not grow the map. */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number; refused: boolean }>();
  private readonly limit: RateLimit;
  private readonly now: () => number;
  constructor(limit: RateLimit, now: () => number) {
    this.limit = limit;
    this.now = now;
    if (!(limit.perSecond > 0) || !(limit.burst >= 1))
      throw new HttpError(
        'badRequest',
        `a rate limit needs perSecond > 0 and burst >= 1, not ${JSON.stringify(limit)}`,
      );
  }

  /** Takes one token for `key`: wait 0 when granted, else the milliseconds until one is there. */
  take(key: string): { waitMs: number; first: boolean } {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.limit.burst, at: t, refused: false };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((t - b.at) / 1000) * this.limit.perSecond);
    b.at = t;
    if (this.buckets.size > 10_000) this.prune(t);
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      b.refused = false;
      return { waitMs: 0, first: false };
    }
    const first = !b.refused;
    b.refused = true;
    return { waitMs: Math.ceil(((1 - b.tokens) / this.limit.perSecond) * 1000), first };
  }

  private prune(t: number): void {
    for (const [k, b] of this.buckets)
      if (b.tokens + ((t - b.at) / 1000) * this.limit.perSecond >= this.limit.burst) this.buckets.delete(k);
  }
}

/**
 * The admin token check, in constant time: both sides are hashed to 32 bytes first, so neither the position of
 * the first wrong byte nor a length difference shows in the timing.
 */
export function sameSecret(given: string | undefined, expected: string | undefined): boolean {
  if (!expected || given === undefined) return false;
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The rules of one server; `check` runs before any route, `corsHeaders` decorates every answer. */
export class HttpRules {
  private readonly names: string[];
  private readonly extraHosts: { name: string; port: string | undefined }[];
  private readonly origins: Set<string>;
  private readonly perIp: TokenBuckets;
  private readonly join: TokenBuckets;
  private readonly register: TokenBuckets;

  constructor(o: HttpRulesOptions) {
    const listen = o.listenHost.trim().toLowerCase();
    const loopback = listen === 'localhost' || listen === '::1' || listen.startsWith('127.');
    this.names = WILDCARD.has(listen)
      ? [...new Set([...LOOPBACK_NAMES, ...interfaceNames()])]
      : [hostName(listen), ...(loopback ? LOOPBACK_NAMES : [])];
    this.extraHosts = (o.allowedHosts ?? []).map((h) => {
      const parsed = splitHost(h);
      if (!parsed) throw new HttpError('badRequest', `allowed host ${JSON.stringify(h)} is not host or host:port`);
      return parsed;
    });
    this.origins = new Set(
      (o.allowedOrigins ?? []).map((raw) => {
        if (raw.trim() === '*')
          throw new HttpError('badRequest', "allowed origins: list each origin, '*' is not allowed");
        let u: URL | undefined;
        try {
          u = new URL(raw);
        } catch {}
        if (!u || u.origin === 'null')
          throw new HttpError(
            'badRequest',
            `allowed origin ${JSON.stringify(raw)} is not an origin (http://host:port)`,
          );
        return u.origin;
      }),
    );
    const limits = { ...DEFAULT_RATE_LIMITS, ...o.rateLimits };
    const now = o.now ?? Date.now;
    this.perIp = new TokenBuckets(limits.perIp, now);
    this.join = new TokenBuckets(limits.join, now);
    this.register = new TokenBuckets(limits.register, now);
  }

  /** True when `host` (a Host header) names this server: a listen name on the port it arrived on, or a listed one. */
  hostAllowed(host: string | undefined, localPort: number | undefined): boolean {
    const h = host === undefined ? undefined : splitHost(host);
    if (!h) return false;
    const port = h.port ?? '80';
    if (this.names.includes(h.name) && port === String(localPort)) return true;
    return this.extraHosts.some((e) => e.name === h.name && (e.port === undefined || e.port === port));
  }

  /** True when a browser at `origin` may write: a listed origin, or this server's own (same-origin) address. */
  originAllowed(origin: string, localPort: number | undefined): boolean {
    if (this.origins.has(origin)) return true;
    let u: URL;
    try {
      u = new URL(origin);
    } catch {
      return false;
    }
    if (u.origin !== origin || (u.protocol !== 'http:' && u.protocol !== 'https:')) return false;
    return this.hostAllowed(`${u.hostname}:${u.port || (u.protocol === 'https:' ? 443 : 80)}`, localPort);
  }

  /** CORS headers for an answer: only a listed origin is told it may read (never '*'). */
  corsHeaders(origin: string | undefined): Record<string, string> {
    return origin && this.origins.has(origin) ? { 'access-control-allow-origin': origin, vary: 'origin' } : {};
  }

  /**
   * Refuses what must not reach a route, cheapest first: over the rate (429), a Host this server is not (421,
   * DNS rebinding), a write from a foreign browser origin (403, CSRF). Content-Type is `checkJson`'s, after routing.
   */
  check(req: IncomingMessage, method: string, path: string): void {
    const ip = req.socket.remoteAddress ?? 'unknown';
    this.take(this.perIp, ip, `${ip} sent more than the API's rate limit`);
    if (method === 'POST' && path === '/api/peers/join')
      this.take(this.join, ip, `${ip} sent more joins than the rate limit (POST /api/peers/join)`);
    if (method === 'POST' && path === '/api/models')
      this.take(this.register, ip, `${ip} registered more models than the rate limit (POST /api/models)`);
    const localPort = req.socket.localPort;
    const host = req.headers.host;
    if (!this.hostAllowed(host, localPort))
      throw new HttpError(
        'misdirected',
        `Host ${JSON.stringify(host ?? '')} is not a name this coordinator serves (a DNS-rebinding page, or a ` +
          "proxy that needs changeOrigin or the coordinator's allowedHosts)",
      );
    const origin = req.headers.origin;
    if (origin !== undefined && isStateChanging(method) && !this.originAllowed(origin, localPort))
      throw new HttpError(
        'forbidden',
        `a ${method} from the browser origin ${JSON.stringify(origin)} is refused (cross-site request): only this ` +
          "coordinator's own origin and its allowedOrigins may write",
      );
  }

  private take(buckets: TokenBuckets, ip: string, message: string): void {
    const { waitMs, first } = buckets.take(ip);
    if (waitMs === 0) return;
    const retryAfterS = Math.max(1, Math.ceil(waitMs / 1000));
    throw new RateLimited(`${message}: retry after ${retryAfterS} s`, retryAfterS, first);
  }
}

/** Refuses a state-changing request whose body is not declared JSON (415): no text/plain or form posts. */
export function checkJson(req: IncomingMessage, method: string): void {
  if (!isStateChanging(method)) return;
  const type = req.headers['content-type'];
  const media = (type ?? '').split(';')[0].trim().toLowerCase();
  if (media !== 'application/json')
    throw new HttpError(
      'unsupportedMediaType',
      `${method} needs Content-Type: application/json, not ${type === undefined ? 'none' : JSON.stringify(type)}`,
    );
}
