import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CoordinatorClient, CoordinatorError, type OutageEvent } from '../../src/net/coordinator-client.ts';

/**
 * The client's side of an outage against a real HTTP server on a real port: what counts as transient (no answer,
 * 5xx, 507) and is waited out, what stays an error (a 4xx with its reason), and that each outage is told once.
 */
describe('CoordinatorClient through an outage', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
  });

  /** A server answering each request with the next [status, body] of `answers` (the last one repeated). */
  async function serve(answers: Array<[number, unknown]>, port = 0): Promise<{ url: string; hits: () => number }> {
    let n = 0;
    server = createServer((req, res) => {
      const [status, body] = answers[Math.min(n++, answers.length - 1)];
      req.resume();
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => n };
  }

  it('tells transient failures from answers with a reason', () => {
    for (const s of [0, 500, 502, 503, 507, 429, 408]) expect(new CoordinatorError(s, 'm').transient).toBe(true);
    for (const s of [400, 403, 404, 409, 413]) expect(new CoordinatorError(s, 'm').transient).toBe(false);
  });

  it('waits out 5xx and 507 answers, tells the outage once, and gets the answer', async () => {
    const { url, hits } = await serve([
      [503, { error: 'starting', code: 'unavailable' }],
      [507, { error: 'disk full', code: 'storage-full' }],
      [500, {}],
      [200, { ok: true }],
    ]);
    const client = new CoordinatorClient(url);
    const events: OutageEvent[] = [];
    client.onOutage((e) => events.push(e));
    const health = await client.untilAnswered(() => client.health());
    expect(health).toEqual({ ok: true });
    expect(hits()).toBe(4);
    expect(events.map((e) => e.type)).toEqual(['down', 'up']);
    expect(events[0].type === 'down' && events[0].error.status).toBe(503);
    expect(client.down).toBeNull();
    expect(client.outages).toBe(1);
  });

  it('a 4xx is thrown at once, with its reason and code', async () => {
    const { url, hits } = await serve([[403, { error: 'peer p holds no stage of model m', code: 'forbidden' }]]);
    const client = new CoordinatorClient(url);
    const err = await client.untilAnswered(() => client.model('m')).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 403, code: 'forbidden', transient: false });
    expect((err as Error).message).toMatch(/holds no stage/);
    expect(hits()).toBe(1);
    expect(client.down).toBeNull();
  });

  it('nothing listening: keeps trying until the server is there, woken early by another answered request', async () => {
    // A port that was free a moment ago: connections are refused until the server comes.
    const probe = await serve([[200, {}]]);
    const port = Number(new URL(probe.url).port);
    await new Promise((r) => server!.close(r));
    server = undefined;
    const client = new CoordinatorClient(probe.url);
    const lines: string[] = [];
    client.onOutage((e) => lines.push(e.type));
    const t0 = Date.now();
    const waiting = client.untilAnswered(() => client.model('m'));
    await new Promise((r) => setTimeout(r, 4000));
    expect(client.down).not.toBeNull();
    await serve([[200, { model: { steps: { done: 7 } } }]], port);
    await client.health(); // a heartbeat answered: the waiting request goes at once, not after its back-off
    const woken = Date.now();
    const { model } = await waiting;
    expect(model).toEqual({ steps: { done: 7 } });
    expect(lines).toEqual(['down', 'up']);
    expect(Date.now() - woken).toBeLessThan(1000);
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it('gives up when told to stop, with the last transient error', async () => {
    const { url } = await serve([[503, { error: 'down for maintenance' }]]);
    const client = new CoordinatorClient(url);
    let stop = false;
    setTimeout(() => (stop = true), 300);
    const err = await client.untilAnswered(() => client.health(), { stopped: () => stop }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, transient: true });
  });
});
