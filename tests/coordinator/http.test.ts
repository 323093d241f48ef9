import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { memoryLog, tempDir, tinyConfig } from './fixtures.ts';

/** A real coordinator on a free loopback port, driven with fetch as a worker would. */
describe('coordinator HTTP API', () => {
  const tmp = tempDir();
  const dbPath = join(tmp.dir, 'coordinator.db');
  const logs = memoryLog();
  let relayStopped = 0;
  let coord: Coordinator;
  let modelId: string;

  const start = () =>
    Coordinator.start({
      dbPath,
      heartbeatMs: 200,
      log: logs.log,
      relay: async () => ({
        multiaddrs: ['/ip4/127.0.0.1/tcp/4011/ws/p2p/12D3KooWRelay'],
        stop: () => void relayStopped++,
      }),
    });

  async function call(
    method: string,
    path: string,
    body?: unknown,
    raw?: string,
  ): Promise<{ status: number; json: any }> {
    const res = await fetch(coord.url + path, {
      method,
      headers: body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {},
      body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    return { status: res.status, json: await res.json() };
  }
  const post = (path: string, body: unknown) => call('POST', path, body);
  const get = (path: string) => call('GET', path);

  const registration = {
    name: 'Tiny four-stage',
    config: tinyConfig,
    layout: [1, 1, 1, 1],
    codec: 'int8',
    microBatches: 4,
    batch: 2,
    pricePer1kTokens: 0.25,
  };
  const peers = [
    ['peer-a', 50],
    ['peer-b', 40],
    ['peer-c', 30],
    ['peer-d', 20],
    ['peer-e', 10],
  ] as const;

  beforeAll(async () => {
    coord = await start();
  });
  afterAll(async () => {
    await coord.stop();
    tmp.cleanup();
  });

  it('answers health with the relay addresses it was given', async () => {
    const { status, json } = await get('/api/health');
    expect(status).toBe(200);
    expect(json).toMatchObject({
      ok: true,
      models: 0,
      peersAlive: 0,
      heartbeatMs: 200,
      relay: { multiaddrs: ['/ip4/127.0.0.1/tcp/4011/ws/p2p/12D3KooWRelay'] },
    });
    expect(coord.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('a peer joining before any model is told to wait', async () => {
    const { status, json } = await post('/api/peers/join', { peerId: 'early', kind: 'browser', tokensPerSecond: 5 });
    expect(status).toBe(200);
    expect(json).toMatchObject({ status: 'wait', reason: 'no model is registered yet', retryMs: 200 });
    expect((await post('/api/peers/leave', { peerId: 'early' })).json).toEqual({ ok: true, peerId: 'early' });
  });

  it('registers a model and lists it with its stages and their cost', async () => {
    const { status, json } = await post('/api/models', registration);
    expect(status).toBe(201);
    modelId = json.model.id;
    expect(modelId).toMatch(/^tiny-four-stage-[0-9a-f]{6}$/);
    expect(json.model.stages.map((s: any) => [s.firstLayer, s.endLayer])).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
      [3, 4],
    ]);
    // The last stage also runs the head, so it costs more per token than a middle one.
    expect(json.model.stages[3].flopsPerToken).toBeGreaterThan(json.model.stages[1].flopsPerToken);
    const list = await get('/api/models');
    expect(list.json.models.map((m: any) => m.id)).toEqual([modelId]);
    expect(list.json.models[0]).toMatchObject({ stages: 4, covered: false, codec: 'int8' });
  });

  it('five peers of different speeds join and cover every stage, one stage each', async () => {
    for (const [peerId, tokensPerSecond] of peers) {
      const { status, json } = await post('/api/peers/join', { peerId, kind: 'node', tokensPerSecond });
      expect(status).toBe(200);
      expect(json.status).toBe('assigned');
      expect(json.assignment).toMatchObject({
        modelId,
        stages: 4,
        spec: { codec: { name: 'int8' }, microBatches: 4, batch: 2 },
      });
    }
    const { json } = await get(`/api/models/${modelId}`);
    expect(json.model.covered).toBe(true);
    expect(json.model.stages.every((s: any) => s.peers.length >= 1)).toBe(true);
    const held = json.model.stages.flatMap((s: any) => s.peers.map((p: any) => p.peerId)).sort();
    expect(held).toEqual(peers.map(([p]) => p).sort());
    // The heartbeat answer carries the whole pipeline, as the model view does.
    const hb = await post('/api/peers/heartbeat', { peerId: 'peer-a', stats: { tokensPerSecond: 50, bytesSent: 10 } });
    expect(hb.json.assignment.pipeline.map((s: any) => s.peers.length)).toEqual(
      json.model.stages.map((s: any) => s.peers.length),
    );
  });

  it(
    'a peer that stops heartbeating is declared gone and its stage is taken over; a moved peer ' + 'learns it',
    async () => {
      const before = (await get(`/api/models/${modelId}`)).json.model;
      const lone = before.stages.find((s: any) => s.peers.length === 1);
      const victim: string = lone.peers[0].peerId;
      const alive = peers.map(([p]) => p).filter((p) => p !== victim);
      const answers = new Map<string, any>();
      const beat = setInterval(() => {
        for (const peerId of alive)
          void post('/api/peers/heartbeat', { peerId }).then((r) => answers.set(peerId, r.json));
      }, 30);
      let after: any;
      try {
        const t0 = Date.now();
        do {
          await new Promise((r) => setTimeout(r, 25));
          after = (await get(`/api/models/${modelId}`)).json.model;
        } while (
          after.stages.some((s: any) => s.peers.some((p: any) => p.peerId === victim)) &&
          Date.now() - t0 < 5000
        );
        await new Promise((r) => setTimeout(r, 80)); // one more heartbeat round, so movers hear of it
      } finally {
        clearInterval(beat);
      }
      expect(after.covered).toBe(true);
      expect(after.stages[lone.index].peers.length).toBeGreaterThanOrEqual(1);
      const peersView = (await get('/api/peers')).json.peers;
      expect(peersView.find((p: any) => p.peerId === victim).status).toBe('gone');
      // Whoever now holds the lost stage was told so by its heartbeat answer.
      const taker: string = after.stages[lone.index].peers[0].peerId;
      expect(answers.get(taker).assignment.stage).toBe(lone.index);
      const events = (await get('/api/events')).json.events;
      expect(events.some((e: any) => e.kind === 'gone' && e.detail.peerId === victim)).toBe(true);
      // The gone peer's heartbeat is refused with a reason; joining again resumes it.
      const refused = await post('/api/peers/heartbeat', { peerId: victim });
      expect(refused.status).toBe(409);
      expect(refused.json.error).toMatch(/gone.*join again/);
      const back = await post('/api/peers/join', { peerId: victim, kind: 'node', tokensPerSecond: 20 });
      expect(back.json.status).toBe('assigned');
    },
  );

  it('records step metrics once per step and serves them with a cursor', async () => {
    for (let step = 0; step < 5; step++) {
      const r = await post(`/api/models/${modelId}/metrics`, {
        step,
        loss: 5 - step * 0.5,
        tokens: 64,
        peerId: 'peer-a',
      });
      expect(r.status).toBe(201);
    }
    const replay = await post(`/api/models/${modelId}/metrics`, { step: 2, loss: 99, tokens: 64 });
    expect(replay.status).toBe(200);
    expect(replay.json).toMatchObject({ duplicate: true, step: { step: 2, loss: 4, status: 'done' } });
    const val = await post(`/api/models/${modelId}/metrics`, { step: 4, kind: 'val', loss: 3.5 });
    expect(val.status).toBe(201);
    const all = await get(`/api/models/${modelId}/metrics`);
    expect(all.json.metrics.map((m: any) => [m.step, m.kind, m.value])).toEqual([
      [0, 'train', 5],
      [1, 'train', 4.5],
      [2, 'train', 4],
      [3, 'train', 3.5],
      [4, 'train', 3],
      [4, 'val', 3.5],
    ]);
    expect(all.json.steps).toEqual({ running: 0, done: 5, failed: 0 });
    const later = await get(`/api/models/${modelId}/metrics?since=${all.json.metrics[3].id}`);
    expect(later.json.metrics.map((m: any) => m.step)).toEqual([4, 4]);
    const none = await get(`/api/models/${modelId}/metrics?since=${all.json.next}`);
    expect(none.json.metrics).toEqual([]);
  });

  it('rejects bad input with 4xx and a reason, logs it, and keeps serving', async () => {
    const warnsBefore = logs.lines.filter((l) => l.level === 'warn').length;
    const cases: Array<[Promise<{ status: number; json: any }>, number, RegExp]> = [
      [call('POST', '/api/models', undefined, '{"name": "x", '), 400, /malformed JSON/],
      [call('POST', '/api/peers/join', undefined, ''), 400, /empty body/],
      [post('/api/models', [1, 2]), 400, /model must be a JSON object/],
      [post('/api/models', { ...registration, batch: undefined }), 400, /batch must be an integer/],
      [post('/api/models', { ...registration, config: { ...tinyConfig, heads: 3 } }), 400, /not divisible by heads/],
      [post('/api/models', { ...registration, layout: [1, 1] }), 400, /does not split 4 layers/],
      [post('/api/models', { ...registration, layout: [2, 0, 2] }), 400, /stage 1 has no layers/],
      [post('/api/models', { ...registration, codec: 'gzip' }), 400, /codec must be one of/],
      [post('/api/models', { ...registration, pricePer1kTokens: 'free' }), 400, /pricePer1kTokens/],
      [post('/api/models', { ...registration, colour: 'red' }), 400, /unknown field colour/],
      [post('/api/models', { ...registration, id: modelId }), 409, /is taken/],
      [get('/api/models/no-such-model'), 404, /unknown model "no-such-model"/],
      [get('/api/models/no-such-model/metrics'), 404, /unknown model/],
      [post('/api/models/no-such-model/metrics', { step: 1, loss: 1 }), 404, /unknown model/],
      [post(`/api/models/${modelId}/metrics`, { step: -1, loss: 1 }), 400, /step must be an integer/],
      [post(`/api/models/${modelId}/metrics`, { step: 9, loss: 'NaN' }), 400, /loss must be a finite number/],
      [post(`/api/models/${modelId}/metrics`, { step: 9, loss: 1, peerId: 'stranger' }), 403, /holds no stage/],
      [post(`/api/models/${modelId}/metrics`, { step: 3, status: 'failed' }), 409, /already done/],
      [get(`/api/models/${modelId}/metrics?since=abc`), 400, /since must be a non-negative integer/],
      [post('/api/peers/join', { peerId: 'x y', kind: 'node', tokensPerSecond: 1 }), 400, /peerId/],
      [
        post('/api/peers/join', { peerId: 'p9', kind: 'phone', tokensPerSecond: 1 }),
        400,
        /kind must be one of node, browser/,
      ],
      [
        post('/api/peers/join', { peerId: 'p9', kind: 'node', tokensPerSecond: 0 }),
        400,
        /tokensPerSecond must be a finite number > 0/,
      ],
      [
        post('/api/peers/join', { peerId: 'p9', kind: 'node', tokensPerSecond: 1, preferModel: 'nope' }),
        404,
        /unknown model/,
      ],
      [post('/api/peers/heartbeat', { peerId: 'never-joined' }), 404, /unknown peer never-joined: join first/],
      [
        post('/api/peers/heartbeat', { peerId: 'peer-a', stats: { tokensPerSecond: 'fast' } }),
        400,
        /stats.tokensPerSecond/,
      ],
      [post('/api/peers/leave', {}), 400, /peerId must be a non-empty string/],
      [
        call('POST', '/api/peers/join', undefined, JSON.stringify({ peerId: 'big', pad: 'x'.repeat(70_000) })),
        413,
        /exceeds the 65536-byte limit/,
      ],
      [get('/api/nothing-here'), 404, /no route/],
      [call('DELETE', '/api/models'), 405, /use GET or POST/],
      [get('/api/models/%E0%A4%A'), 400, /malformed path segment/],
    ];
    for (const [pending, status, reason] of cases) {
      const r = await pending;
      expect([r.status, r.json.error]).toEqual([status, expect.stringMatching(reason)]);
      expect(typeof r.json.code).toBe('string');
    }
    // Garbage that is not even HTTP.
    const rawAnswer = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(coord.url);
      const sock = connect(Number(port), '127.0.0.1', () => sock.end('NOT HTTP AT ALL\r\n\r\n'));
      let text = '';
      sock.on('data', (d) => (text += d));
      sock.on('end', () => resolve(text));
      sock.on('error', reject);
    });
    expect(rawAnswer).toMatch(/^HTTP\/1\.1 400/);
    // Every refusal was logged, and the server still works.
    expect(logs.lines.filter((l) => l.level === 'warn').length - warnsBefore).toBeGreaterThanOrEqual(cases.length + 1);
    expect((await get('/api/health')).json.ok).toBe(true);
    expect((await get(`/api/models/${modelId}`)).status).toBe(200);
  });

  it('a restart on the same database keeps models, peers, metrics and events', async () => {
    const models = (await get('/api/models')).json.models;
    const metrics = (await get(`/api/models/${modelId}/metrics`)).json.metrics;
    const peersBefore = (await get('/api/peers')).json.peers.map((p: any) => [p.peerId, p.status, p.joinedAt]);
    const lastEvent = (await get('/api/events')).json.next;
    await coord.stop();
    expect(relayStopped).toBe(1);
    coord = await start();
    expect((await get('/api/models')).json.models.map((m: any) => [m.id, m.name, m.stages])).toEqual(
      models.map((m: any) => [m.id, m.name, m.stages]),
    );
    expect((await get(`/api/models/${modelId}`)).json.model.config).toEqual(tinyConfig);
    expect((await get(`/api/models/${modelId}/metrics`)).json.metrics).toEqual(metrics);
    expect((await get('/api/peers')).json.peers.map((p: any) => [p.peerId, p.status, p.joinedAt])).toEqual(peersBefore);
    const events = (await get(`/api/events?since=${lastEvent}`)).json.events;
    expect(events[0].kind).toBe('start');
    expect(events[0].id).toBe(lastEvent + 1);
  });
});
