import * as crypto from 'node:crypto';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { HttpRules, sameSecret } from '../../src/coordinator/http-guard.ts';
import { memoryLog, tempDir, tinyModel } from './fixtures.ts';

// A pass-through spy: the admin token must be compared by crypto.timingSafeEqual, not by string equality.
vi.mock('node:crypto', async (original) => {
  const real = await original<typeof import('node:crypto')>();
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) };
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: { error?: string; code?: string; [k: string]: unknown };
}

/** One request with exactly these headers (fetch would set its own Host and Origin): what an attacker controls. */
function raw(url: string, method: string, path: string, headers: Record<string, string>, body?: string) {
  const u = new URL(url);
  return new Promise<Answer>((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, method, path, headers, agent: false, setHost: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text ? JSON.parse(text) : {} });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const ADMIN = 'the-admin-token-of-this-test';
const APP = 'http://app.example:5173';
const JSON_TYPE = { 'content-type': 'application/json' };

describe('HTTP hygiene: content type, Host, Origin, CORS, admin token, rate limits', () => {
  const tmp = tempDir();
  const logs = memoryLog();
  let coord: Coordinator;
  let host: string;
  const model = tinyModel('hygiene');
  const peerId = 'victim-peer';
  const send = (method: string, path: string, headers: Record<string, string> = {}, body?: string) =>
    raw(coord.url, method, path, { host, ...headers }, body);

  beforeAll(async () => {
    coord = await Coordinator.start({
      dbPath: join(tmp.dir, 'c.db'),
      log: logs.log,
      adminToken: ADMIN,
      allowedOrigins: [APP],
      allowedHosts: ['coordinator.internal'],
    });
    host = new URL(coord.url).host;
    coord.store.insertModel(model);
    coord.store.upsertPeer({ peerId, kind: 'node', tokensPerSecond: 10, preferModel: null, at: Date.now() });
  });
  afterAll(async () => {
    await coord?.stop();
    tmp.cleanup();
  });

  const leave = JSON.stringify({ peerId });
  const epochs = `/api/models/${model.id}/epochs`;
  const admin = { ...JSON_TYPE, authorization: `Bearer ${ADMIN}` };

  it('refuses writes that are not application/json with 415 and a reason, before doing anything', async () => {
    for (const type of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', undefined]) {
      const r = await send('POST', '/api/peers/leave', type ? { 'content-type': type } : {}, leave);
      expect(r.status, String(type)).toBe(415);
      expect(r.json.code).toBe('unsupported-media-type');
      expect(r.json.error).toMatch(/Content-Type: application\/json/);
      expect(r.headers.connection).toBe('close');
    }
    expect(coord.store.getPeer(peerId)?.status, 'the peer was not evicted').toBe('alive');
    // JSON with parameters is JSON; the request reaches its route (nothing to settle: 409).
    const ok = await send('POST', epochs, { ...admin, 'content-type': 'Application/JSON; charset=utf-8' }, '{}');
    expect(ok.status).toBe(409);
    expect(ok.json.error).toMatch(/nothing to settle/);
    // /v1/ writes too.
    expect((await send('POST', '/v1/completions', { 'content-type': 'text/plain' }, '{}')).status).toBe(415);
    // An unknown route or method still says so (the type check comes after routing).
    expect((await send('POST', '/api/health', { 'content-type': 'text/plain' }, '{}')).status).toBe(405);
  });

  it('refuses a Host it does not serve (DNS rebinding) with 421, reads included', async () => {
    const port = new URL(coord.url).port;
    for (const bad of [`evil.example:${port}`, 'evil.example', `127.0.0.1:${Number(port) + 1}`, '127.0.0.1', '']) {
      const r = await raw(coord.url, 'GET', '/api/peers', { host: bad });
      expect(r.status, bad).toBe(421);
      expect(r.json.code).toBe('misdirected-request');
      expect(r.json.error).toMatch(/is not a name this coordinator serves/);
    }
    // No Host at all: Node's HTTP/1.1 parser refuses it (400) before we see it.
    expect((await raw(coord.url, 'GET', '/api/peers', {})).status).toBe(400);
    // Its own address, the loopback aliases on its port, and a configured name (any port) are served.
    for (const good of [host, `localhost:${port}`, 'coordinator.internal', 'coordinator.internal:443']) {
      const r = await raw(coord.url, 'GET', '/api/health', { host: good });
      expect(r.status, good).toBe(200);
    }
    // A rebinding page writes with its own name as Host: refused before the route.
    const w = await raw(coord.url, 'POST', '/api/peers/leave', { host: `evil.example:${port}`, ...JSON_TYPE }, leave);
    expect(w.status).toBe(421);
    expect(coord.store.getPeer(peerId)?.status).toBe('alive');
  });

  it('refuses a write from a foreign browser origin (CSRF) with 403; own and listed ones may write', async () => {
    for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:1`, 'https://app.example:5173']) {
      const r = await send('POST', '/api/peers/leave', { ...JSON_TYPE, origin }, leave);
      expect(r.status, origin).toBe(403);
      expect(r.json.error).toMatch(/cross-site request/);
      expect(r.headers['access-control-allow-origin']).toBeUndefined();
      // Even with the admin token (a browser could hold it in a form): the origin decides first.
      expect((await send('POST', epochs, { ...admin, origin }, '{}')).status).toBe(403);
    }
    expect(coord.store.getPeer(peerId)?.status).toBe('alive');
    const listed = await send('POST', epochs, { ...admin, origin: APP }, '{}');
    expect(listed.status).toBe(409);
    expect(listed.headers['access-control-allow-origin']).toBe(APP);
    const own = await send('POST', epochs, { ...admin, origin: coord.url }, '{}');
    expect(own.status).toBe(409);
    // Requests without Origin (Node workers, curl) are not cross-site: they pass.
    expect((await send('POST', epochs, admin, '{}')).status).toBe(409);
  });

  it('never answers CORS with *: only a listed origin may read cross-origin', async () => {
    const foreign = await send('GET', '/api/peers', { origin: 'http://evil.example' });
    expect(foreign.status).toBe(200);
    expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
    const pre = await send('OPTIONS', '/api/peers/leave', {
      origin: 'http://evil.example',
      'access-control-request-method': 'POST',
    });
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const listed = await send('GET', '/api/peers', { origin: APP });
    expect(listed.headers['access-control-allow-origin']).toBe(APP);
    expect(listed.headers.vary).toMatch(/origin/i);
    expect(() => new HttpRules({ listenHost: '127.0.0.1', allowedOrigins: ['*'] })).toThrow(/'\*' is not allowed/);
  });

  it('admin routes: a wrong or missing token is 401, the right one passes; compared with timingSafeEqual', async () => {
    const spy = vi.mocked(crypto.timingSafeEqual);
    for (const authorization of [`Bearer ${ADMIN}x`, `Bearer ${ADMIN.slice(0, -1)}`, 'Bearer ', ADMIN, '']) {
      spy.mockClear();
      const r = await send('POST', epochs, { ...JSON_TYPE, authorization }, '{}');
      expect(r.status, authorization).toBe(401);
      expect(spy, authorization).toHaveBeenCalledTimes(1);
    }
    expect((await send('POST', epochs, JSON_TYPE, '{}')).status).toBe(401);
    spy.mockClear();
    expect((await send('POST', epochs, admin, '{}')).status).toBe(409);
    expect(spy).toHaveBeenCalledTimes(1);
    // Equal-length digests whatever the inputs' lengths (timingSafeEqual throws on unequal lengths).
    const [a, b] = spy.mock.calls[0] as [Buffer, Buffer];
    expect([a.length, b.length]).toEqual([32, 32]);
  });

  it('sameSecret: true only for the same string, whatever the lengths', () => {
    expect(sameSecret('abc', 'abc')).toBe(true);
    expect(sameSecret('abc', 'abd')).toBe(false);
    expect(sameSecret('a', 'a much longer secret than a')).toBe(false);
    expect(sameSecret('a much longer secret than a', 'a')).toBe(false);
    expect(sameSecret('', 'abc')).toBe(false);
    expect(sameSecret(undefined, 'abc')).toBe(false);
    expect(sameSecret('abc', undefined)).toBe(false);
    expect(sameSecret('', '')).toBe(false);
  });
});

describe('HTTP hygiene: per-IP rate limits', () => {
  const tmp = tempDir();
  const logs = memoryLog();
  let coord: Coordinator;

  beforeAll(async () => {
    coord = await Coordinator.start({
      dbPath: join(tmp.dir, 'c.db'),
      log: logs.log,
      rateLimits: { perIp: { perSecond: 4, burst: 8 }, join: { perSecond: 1, burst: 2 } },
    });
  });
  afterAll(async () => {
    await coord?.stop();
    tmp.cleanup();
  });

  it('a burst beyond the limit gets 429 with Retry-After, and the client gets through after waiting', async () => {
    const host = new URL(coord.url).host;
    const answers = await Promise.all(Array.from({ length: 14 }, () => raw(coord.url, 'GET', '/api/health', { host })));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(8);
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(4);
    for (const a of limited) {
      expect(a.json.code).toBe('too-many-requests');
      expect(a.json.error).toMatch(/rate limit: retry after \d+ s/);
      expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    // Logged once for the burst, not once per refused request (a flood must not flood the log).
    expect(logs.lines.filter((l) => l.message.includes('→ 429')).length).toBe(1);
    const wait = Number(limited[0].headers['retry-after']);
    await new Promise((r) => setTimeout(r, wait * 1000 + 50));
    expect((await raw(coord.url, 'GET', '/api/health', { host })).status).toBe(200);
  });

  it('joins have a tighter bucket of their own; other routes keep answering', async () => {
    const host = new URL(coord.url).host;
    await new Promise((r) => setTimeout(r, 1100)); // the per-IP bucket refilled past 4
    const join = () => raw(coord.url, 'POST', '/api/peers/join', { host, ...JSON_TYPE }, '{}');
    // Malformed joins still spend tokens: the bucket is taken before the body is read.
    expect((await join()).status).toBe(400);
    expect((await join()).status).toBe(400);
    const third = await join();
    expect(third.status).toBe(429);
    expect(third.json.error).toMatch(/more joins than the rate limit/);
    expect(third.headers['retry-after']).toBe('1');
    expect((await raw(coord.url, 'GET', '/api/health', { host })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1050));
    expect((await join()).status).toBe(400);
  });
});
