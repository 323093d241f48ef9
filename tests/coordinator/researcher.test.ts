import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { memoryLog, tempDir, tinyConfig } from './fixtures.ts';

/**
 * The Researcher page's data from a real coordinator on a loopback port: measured links and bytes per token from
 * heartbeats, throughput from recorded steps, verification from settled and open epochs, the live event stream,
 * and all of it still there after a restart on the same database. The clock is ours, so rates are exact.
 */
describe('coordinator: researcher data', () => {
  const tmp = tempDir();
  const dbPath = join(tmp.dir, 'coordinator.db');
  const logs = memoryLog();
  let clock = 1_000_000;
  let coord: Coordinator;
  let modelId: string;
  /** Peer on stage 0, stage 1, and a replica (the third peer), as the assignment placed them. */
  let s0: string, s1: string, replica: string, replicaStage: number;

  const start = () =>
    Coordinator.start({ dbPath, heartbeatMs: 600_000, log: logs.log, now: () => clock, maxLiveClients: 2 });
  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(coord.url + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  }
  const post = (path: string, body: unknown) => call('POST', path, body);
  const get = (path: string) => call('GET', path);
  const beat = (peerId: string, links: unknown[]) => post('/api/peers/heartbeat', { peerId, links });

  beforeAll(async () => {
    coord = await start();
    const reg = await post('/api/models', {
      name: 'Two stages',
      config: tinyConfig,
      layout: [2, 2],
      codec: 'int8',
      microBatches: 2,
      batch: 2,
      pricePer1kTokens: 0,
    });
    expect(reg.status).toBe(201);
    modelId = reg.json.model.id;
    for (const [peerId, tps] of [
      ['peer-a', 50],
      ['peer-b', 40],
      ['peer-c', 30],
    ] as const) {
      expect((await post('/api/peers/join', { peerId, kind: 'node', tokensPerSecond: tps })).json.status).toBe(
        'assigned',
      );
    }
    const stages = (await get(`/api/models/${modelId}/topology`)).json.stages;
    s0 = stages[0].peers[0].peerId;
    s1 = stages[1].peers[0].peerId;
    const extra = stages.find((s: any) => s.peers.length === 2);
    replicaStage = extra.index;
    replica = extra.peers[1].peerId;
  });
  afterAll(async () => {
    await coord.stop();
    tmp.cleanup();
  });

  it('topology lists stages × peers and the boundary with its codec, unmeasured at first', async () => {
    const { status, json } = await get(`/api/models/${modelId}/topology`);
    expect(status).toBe(200);
    expect(json.modelId).toBe(modelId);
    expect(json.stages.map((s: any) => [s.index, s.firstLayer, s.endLayer, s.hasEmbedding, s.hasHead])).toEqual([
      [0, 0, 2, true, false],
      [1, 2, 4, false, true],
    ]);
    expect(
      json.stages
        .flatMap((s: any) => s.peers)
        .map((p: any) => p.peerId)
        .sort(),
    ).toEqual(['peer-a', 'peer-b', 'peer-c']);
    expect(json.stages[0].peers[0]).toMatchObject({ replica: 0, kind: 'node', team: null });
    expect(json.links).toEqual([]);
    expect(json.boundaries).toEqual([
      { after: 0, codec: 'int8', bytesPerToken: null, rawBytesPerToken: tinyConfig.dModel * 4 * 2 },
    ]);
  });

  it(
    'two heartbeats make a link rate; bytes over the boundary per token of the steps between; a counter reset ' +
      'is not negative',
    async () => {
      const t0 = clock;
      expect((await beat(s0, [{ peerId: s1, bytesSent: 1000, bytesReceived: 500, rttMs: 12 }])).status).toBe(200);
      expect((await beat(s1, [{ peerId: s0, bytesSent: 500, bytesReceived: 1000, rttMs: 11 }])).status).toBe(200);
      clock = t0 + 1000;
      expect((await post(`/api/models/${modelId}/metrics`, { step: 0, loss: 4, tokens: 100 })).status).toBe(201);
      clock = t0 + 2000;
      await beat(s0, [{ peerId: s1, bytesSent: 5000, bytesReceived: 2500, rttMs: 14 }]);
      await beat(s1, [{ peerId: s0, bytesSent: 2500, bytesReceived: 5000 }]);
      let topo = (await get(`/api/models/${modelId}/topology`)).json;
      const link = (from: string, to: string) => topo.links.find((l: any) => l.from === from && l.to === to);
      // s0 → s1: 4000 bytes in 2 s; s1 → s0: 2000 bytes in 2 s. A report without rttMs keeps the last one measured.
      expect(link(s0, s1)).toEqual({
        from: s0,
        to: s1,
        kind: 'pipeline',
        bytesPerSecond: 2000,
        rttMs: 14,
        at: t0 + 2000,
      });
      expect(link(s1, s0)).toMatchObject({ kind: 'pipeline', bytesPerSecond: 1000, rttMs: 11 });
      // 6000 bytes crossed the boundary (activations + gradients) while step 0 trained 100 tokens.
      expect(topo.boundaries[0].bytesPerToken).toBe(60);
      // The reporter's transport was replaced (new configuration): the counter restarts below the stored one.
      clock = t0 + 4000;
      await beat(s0, [{ peerId: s1, bytesSent: 300, bytesReceived: 0, rttMs: 13 }]);
      topo = (await get(`/api/models/${modelId}/topology`)).json;
      expect(link(s0, s1).bytesPerSecond).toBe(150);
    },
  );

  it('replicas of one stage have a sync link', async () => {
    const sibling = replicaStage === 0 ? s0 : s1;
    await beat(replica, [{ peerId: sibling, bytesSent: 10, bytesReceived: 10, rttMs: null }]);
    clock += 1000;
    await beat(replica, [{ peerId: sibling, bytesSent: 1010, bytesReceived: 10, rttMs: 3 }]);
    const topo = (await get(`/api/models/${modelId}/topology`)).json;
    expect(topo.links.find((l: any) => l.from === replica)).toMatchObject({
      to: sibling,
      kind: 'sync',
      bytesPerSecond: 1000,
      rttMs: 3,
    });
  });

  it('refuses malformed links with a reason, and ignores peers outside the model', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ peerId: s1, bytesSent: -1, bytesReceived: 0 }, /bytesSent must be an integer/],
      [{ peerId: s1, bytesSent: 1.5, bytesReceived: 0 }, /bytesSent must be an integer/],
      [{ peerId: s1, bytesSent: 1, bytesReceived: 0, rttMs: 'fast' }, /rttMs must be a finite number/],
      [{ peerId: 'x y', bytesSent: 1, bytesReceived: 0 }, /peerId/],
      [{ peerId: s0, bytesSent: 1, bytesReceived: 0 }, /no link to itself/],
      [{ peerId: s1, bytesSent: 1, bytesReceived: 0, colour: 1 }, /unknown field colour/],
    ];
    for (const [entry, reason] of cases) {
      const r = await beat(s0, [entry]);
      expect([r.status, r.json.error]).toEqual([400, expect.stringMatching(reason)]);
    }
    const many = Array.from({ length: 65 }, (_, i) => ({ peerId: `p${i}`, bytesSent: 0, bytesReceived: 0 }));
    expect((await beat(s0, many)).json.error).toMatch(/at most 64/);
    expect(
      (
        await beat(s0, [
          { peerId: s1, bytesSent: 1, bytesReceived: 0 },
          { peerId: s1, bytesSent: 2, bytesReceived: 0 },
        ])
      ).json.error,
    ).toMatch(/listed twice/);
    const stranger = await beat(s0, [{ peerId: 'not-in-the-swarm', bytesSent: 5, bytesReceived: 5 }]);
    expect(stranger.status).toBe(200);
    expect(
      (await get(`/api/models/${modelId}/topology`)).json.links.some((l: any) => l.to === 'not-in-the-swarm'),
    ).toBe(false);
  });

  it('throughput: tokens over the time since the previous step, or since the step was reported running', async () => {
    const t = clock;
    clock = t + 2000;
    await post(`/api/models/${modelId}/metrics`, { step: 1, loss: 3.9, tokens: 100 });
    clock = t + 2500;
    await post(`/api/models/${modelId}/metrics`, { step: 2, status: 'running' });
    clock = t + 3000;
    await post(`/api/models/${modelId}/metrics`, { step: 2, loss: 3.8, tokens: 400 });
    const prevFinish = t0Finish();
    const { json } = await get(`/api/models/${modelId}/throughput`);
    expect(json.modelId).toBe(modelId);
    // Step 0 has nothing before it; step 1 ran since step 0 finished; step 2 since its 'running' report.
    expect(json.points).toEqual([
      { step: 1, at: t + 2000, tokensPerSecond: (100 * 1000) / (t + 2000 - prevFinish) },
      { step: 2, at: t + 3000, tokensPerSecond: 800 },
    ]);
    expect((await get(`/api/models/${modelId}/throughput?since=1`)).json.points.map((p: any) => p.step)).toEqual([2]);
    expect((await get(`/api/models/${modelId}/throughput?limit=1`)).json.points.map((p: any) => p.step)).toEqual([2]);
    expect((await get('/api/models/nope/throughput')).status).toBe(404);
    expect((await get(`/api/models/${modelId}/throughput?since=-1`)).status).toBe(400);
  });
  /** When step 0 finished (the second test set the clock to t0 + 1000 for it). */
  const t0Finish = () => 1_000_000 + 1000;

  it(
    'verification per epoch: units receipted, units a replica recomputed, mismatches and who was caught; the ' +
      'open epoch pending',
    async () => {
      const db = coord.store.connection;
      const insert = db.prepare(
        `INSERT INTO receipts (model_id, round, stage, replica, replicas, step, micro, kind, flops, input_hash,
          output_hash, peer_id, signature, at)
       VALUES (?, 0, ?, ?, ?, ?, ?, ?, 1000, ?, ?, ?, '0x00', ?)`,
      );
      const replicas = (stage: number) => (stage === replicaStage ? 2 : 1);
      const other = replicaStage === 0 ? s0 : s1;
      const train = (stage: number, step: number, micro: number, peer: string) =>
        insert.run(
          modelId,
          stage,
          peer === replica ? 1 : 0,
          replicas(stage),
          step,
          micro,
          'train',
          stage === 0 ? `in${step}${micro}` : `act${step}${micro}`,
          stage === 0 ? `act${step}${micro}` : `loss${step}${micro}`,
          peer,
          clock,
        );
      for (const step of [0, 1])
        for (const micro of [0, 1]) {
          train(0, step, micro, s0);
          train(1, step, micro, s1);
        }
      // The replica recomputes two of its sibling's units: one agrees, one does not.
      const input = (micro: number) => (replicaStage === 0 ? `in0${micro}` : `act0${micro}`);
      const output = (micro: number) => (replicaStage === 0 ? `act0${micro}` : `loss0${micro}`);
      insert.run(modelId, replicaStage, 1, 2, 0, 0, 'audit', input(0), output(0), replica, clock);
      insert.run(modelId, replicaStage, 1, 2, 0, 1, 'audit', input(1), 'forged', replica, clock);
      const settled = await coord.settlement.close(modelId);
      expect(settled.throughStep).toBe(1);
      train(0, 2, 0, s0); // the open epoch
      const { status, json } = await get(`/api/models/${modelId}/verification`);
      expect(status).toBe(200);
      expect(json.epochs).toEqual([
        { epoch: 1, status: 'settled', units: 8, audited: 2, mismatches: 1, caught: [other], share: 0.25 },
        { epoch: 2, status: 'pending', units: 1, audited: 0, mismatches: 0, caught: [], share: 0 },
      ]);
      expect(json.totals).toEqual({ units: 9, audited: 2, mismatches: 1, share: 2 / 9 });
      expect((await get('/api/models/nope/verification')).status).toBe(404);
    },
  );

  it(
    'live stream: a snapshot, then a metric and its throughput point reported after connecting; at most N ' +
      'clients; a closed one is forgotten',
    async () => {
      const ctl = new AbortController();
      const res = await fetch(`${coord.url}/api/models/${modelId}/live`, { signal: ctl.signal });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const events = readEvents(res.body!);
      const snapshot = await events.next('snapshot');
      expect(snapshot.metrics.map((m: any) => [m.step, m.kind])).toEqual([
        [0, 'train'],
        [1, 'train'],
        [2, 'train'],
      ]);
      expect(snapshot.throughput.map((p: any) => p.step)).toEqual([1, 2]);
      expect((await events.next('topology')).modelId).toBe(modelId);
      clock += 500;
      await post(`/api/models/${modelId}/metrics`, { step: 3, loss: 3.7, tokens: 100 });
      expect(await events.next('metric')).toMatchObject({ modelId, step: 3, kind: 'train', value: 3.7 });
      expect(await events.next('throughput')).toEqual({ step: 3, at: clock, tokensPerSecond: 200 });
      await post(`/api/models/${modelId}/metrics`, { step: 3, kind: 'val', loss: 3.9 });
      expect(await events.next('metric')).toMatchObject({ step: 3, kind: 'val', value: 3.9 });
      // Cap of 2 (maxLiveClients): a second stream fits, a third is refused until one closes.
      const ctl2 = new AbortController();
      const second = await fetch(`${coord.url}/api/models/${modelId}/live`, { signal: ctl2.signal });
      expect(second.status).toBe(200);
      const third = await fetch(`${coord.url}/api/models/${modelId}/live`);
      expect(third.status).toBe(503);
      expect((await third.json()).error).toMatch(/too many live streams/);
      ctl2.abort();
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const again = await fetch(`${coord.url}/api/models/${modelId}/live`);
        status = again.status;
        await again.body?.cancel();
      }
      expect(status).toBe(200);
      ctl.abort();
      expect((await fetch(`${coord.url}/api/models/nope/live`)).status).toBe(404);
    },
  );

  it('a restart on the same database keeps links, boundary figures and throughput', async () => {
    const before = (await get(`/api/models/${modelId}/topology`)).json;
    const points = (await get(`/api/models/${modelId}/throughput`)).json.points;
    await coord.stop();
    coord = await start();
    const after = (await get(`/api/models/${modelId}/topology`)).json;
    expect(after.links).toEqual(before.links);
    expect(after.boundaries).toEqual(before.boundaries);
    expect(after.links.length).toBeGreaterThanOrEqual(3);
    expect((await get(`/api/models/${modelId}/throughput`)).json.points).toEqual(points);
  });
});

/** Server-sent events of a response body, awaited by name. */
function readEvents(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const queue: Array<{ event: string; data: any }> = [];
  let buffer = '';
  return {
    async next(name: string): Promise<any> {
      for (;;) {
        const i = queue.findIndex((e) => e.event === name);
        if (i >= 0) return queue.splice(0, i + 1)[i].data;
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before a ${name} event`);
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) queue.push({ event, data: JSON.parse(data) });
        }
      }
    },
  };
}
