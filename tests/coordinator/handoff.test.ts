import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { redundancyScore } from '../../src/coordinator/assignment.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { HANDOFF_MS } from '../../src/coordinator/departures.ts';
import { memoryLog, tempDir, tinyConfig } from './fixtures.ts';

/**
 * Redundancy and graceful leaves on a real coordinator (HTTP on a loopback port, SQLite in a temp file), with a
 * fake clock so deadlines and silences are exact: the sweep timer runs for real but sees the fake time.
 */
describe('coordinator: two holders per stage, and leaves that hand the stage off', () => {
  let tmp: ReturnType<typeof tempDir> | null = null;
  let coord: Coordinator | null = null;
  let clock = 1_000_000;
  /** Heartbeat period: peers are gone after 3 × H of silence (30 s), well inside the 60 s hand-off window. */
  const H = 10_000;

  const start = async (dbPath?: string) => {
    tmp ??= tempDir();
    coord = await Coordinator.start({
      dbPath: dbPath ?? join(tmp.dir, 'c.db'),
      heartbeatMs: H,
      log: memoryLog().log,
      now: () => clock,
    });
    return coord;
  };
  afterEach(async () => {
    await coord?.stop();
    coord = null;
    tmp?.cleanup();
    tmp = null;
  });

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(coord!.url + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  }
  const post = (path: string, body: unknown) => call('POST', path, body);
  const beat = async (peerId: string) => (await post('/api/peers/heartbeat', { peerId })).json;
  const joinPeer = async (peerId: string, tokensPerSecond: number) => {
    const r = await post('/api/peers/join', { peerId, kind: 'node', tokensPerSecond });
    expect(r.status).toBe(200);
    return r.json;
  };
  const register = async (layout: number[]) => {
    const r = await post('/api/models', {
      name: `tiny ${layout.length}`,
      config: tinyConfig,
      layout,
      codec: 'none',
      microBatches: 4,
      batch: 2,
      pricePer1kTokens: 0.25,
    });
    expect(r.status).toBe(201);
    return r.json.model.id as string;
  };
  const holders = async (modelId: string): Promise<string[][]> =>
    (await call('GET', `/api/models/${modelId}`)).json.model.stages.map((s: any) => s.peers.map((p: any) => p.peerId));
  /** Moves the clock on in steps shorter than the silence timeout, every peer in `alive` heartbeating each step. */
  const pass = async (ms: number, alive: string[]) => {
    for (let left = ms; left > 0; left -= H) {
      clock += Math.min(H, left);
      for (const p of alive) await beat(p);
    }
  };

  for (const layout of [
    [2, 2],
    [1, 1, 1, 1],
  ]) {
    it(`keeps two holders per stage as peers join: 2, 3, 4, 8 peers on ${layout.length} stages`, async () => {
      await start();
      const modelId = await register(layout);
      const S = layout.length;
      // Different speeds, so throughput alone would rather pile peers onto the costliest stages.
      const speeds = [50, 7, 31, 12, 44, 3, 25, 18];
      for (let P = 1; P <= 8; P++) {
        const answer = await joinPeer(`peer-${P}`, speeds[P - 1]);
        expect(answer.status).toBe('assigned');
        if (![2, 3, 4, 8].includes(P)) continue;
        const counts = (await holders(modelId)).map((l) => l.length);
        expect(redundancyScore(counts), `${P} peers: ${counts}`).toBe(Math.min(P, 2 * S));
        if (P >= 2 * S) expect(Math.min(...counts), `${P} peers: ${counts}`).toBeGreaterThanOrEqual(2);
        else if (P >= S) {
          expect(Math.max(...counts), `${P} peers: ${counts}`).toBeLessThanOrEqual(2);
          expect(counts.filter((c) => c === 2)).toHaveLength(P - S);
        } else expect(Math.max(...counts)).toBe(1);
      }
      // Every assignment lists who is departing: nobody yet.
      expect((await beat('peer-1')).assignment.departing).toEqual([]);
    });
  }

  it('a departure of one of two replicas leaves the other in place, by a leave or by silence', async () => {
    await start();
    const modelId = await register([2, 2]);
    for (const [p, v] of [
      ['a', 40],
      ['b', 30],
      ['c', 20],
      ['d', 10],
    ] as const)
      await joinPeer(p, v);
    const before = await holders(modelId);
    expect(before.map((l) => l.length)).toEqual([2, 2]);
    const [victim, twin] = before[0];
    const twinSeat = (await beat(twin)).assignment;
    expect((await post('/api/peers/leave', { peerId: victim })).json).toEqual({ ok: true, peerId: victim });
    const after = await beat(twin);
    expect(after.status).toBe('assigned');
    // Same stage, same replica, same since: the twin was not touched.
    expect([after.assignment.stage, after.assignment.replica, after.assignment.since]).toEqual([
      twinSeat.stage,
      twinSeat.replica,
      twinSeat.since,
    ]);
    expect((await holders(modelId))[0]).toContain(twin);

    // Three peers on two stages now: a pair and a single holder. One of the pair falls silent (a SIGKILL, as
    // the coordinator sees it): the other stays on its stage, and the single holder is not moved either.
    const now = await holders(modelId);
    const pair = now.findIndex((l) => l.length === 2);
    const [gone, stays] = now[pair];
    const sole = now[1 - pair][0];
    clock += 2 * H;
    for (const p of [stays, sole]) await beat(p);
    clock += 2 * H; // `gone` silent for 4 H now, over the 3 H timeout
    for (const p of [stays, sole]) await beat(p);
    coord!.membership.sweep();
    expect((await post('/api/peers/heartbeat', { peerId: gone })).status).toBe(409);
    const last = await holders(modelId);
    expect(last[pair]).toEqual([stays]);
    expect(last[1 - pair]).toEqual([sole]);
  });

  it('a hand-off leave: out of the layout at once, listed as departing, ends with the final leave', async () => {
    await start();
    const modelId = await register([1, 1, 1, 1]);
    for (const [p, v] of [
      ['a', 40],
      ['b', 30],
      ['c', 20],
      ['d', 10],
      ['e', 25],
    ] as const)
      await joinPeer(p, v);
    const before = await holders(modelId);
    // The leaver: a stage's only holder, so the stage must go to someone else (the doubled stage's spare).
    const stage = before.findIndex((l) => l.length === 1);
    const leaver: string = before[stage][0];
    const others = ['a', 'b', 'c', 'd', 'e'].filter((p) => p !== leaver);

    const left = await post('/api/peers/leave', { peerId: leaver, handoff: true });
    expect(left.status).toBe(200);
    expect(left.json).toMatchObject({
      ok: true,
      peerId: leaver,
      handoff: { modelId, stage, until: clock + HANDOFF_MS },
    });
    const after = await holders(modelId);
    expect(after.flat()).not.toContain(leaver);
    expect(after.every((l) => l.length === 1)).toBe(true);
    expect(left.json.handoff.successors).toEqual(after[stage]);
    expect(left.json.handoff.successors).not.toContain(leaver);

    // Every other peer's assignment names the departing holder; its own heartbeat says it is handing off.
    for (const p of others) {
      const a = await beat(p);
      expect(a.status).toBe('assigned');
      expect(a.assignment.departing).toEqual([{ peerId: leaver, stage }]);
      expect(a.assignment.pipeline.flatMap((s: any) => s.peers.map((x: any) => x.peerId))).not.toContain(leaver);
    }
    const own = await beat(leaver);
    expect(own).toMatchObject({ status: 'wait', handoff: { modelId, stage, until: clock + HANDOFF_MS } });
    expect(own.reason).toContain(`handing off stage ${stage}`);
    // Asking again keeps the first deadline.
    clock += 5_000;
    const again = (await post('/api/peers/leave', { peerId: leaver, handoff: true })).json;
    expect(again.handoff.until).toBe(left.json.handoff.until);

    // The final leave: gone, no longer listed, and its heartbeat must join again.
    expect((await post('/api/peers/leave', { peerId: leaver })).json).toEqual({ ok: true, peerId: leaver });
    expect((await beat(others[0])).assignment.departing).toEqual([]);
    expect((await post('/api/peers/heartbeat', { peerId: leaver })).status).toBe(409);
    const kinds = (await call('GET', '/api/events')).json.events.map((e: any) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(['leave-handoff', 'handoff-end', 'leave']));
  });

  it('a hand-off ends at its deadline (the peer is made to leave) or when the peer falls silent', async () => {
    await start();
    const modelId = await register([2, 2]);
    for (const [p, v] of [
      ['a', 40],
      ['b', 30],
      ['c', 20],
      ['d', 10],
    ] as const)
      await joinPeer(p, v);
    const [x, y] = [(await holders(modelId))[0][0], (await holders(modelId))[1][0]];
    const rest = ['a', 'b', 'c', 'd'].filter((p) => p !== x && p !== y);

    // x hands off and keeps heartbeating past its deadline.
    const ho = (await post('/api/peers/leave', { peerId: x, handoff: true })).json.handoff;
    await pass(HANDOFF_MS - H, [...rest, y, x]);
    expect((await beat(rest[0])).assignment.departing).toEqual([{ peerId: x, stage: ho.stage }]);
    // Its own heartbeat just past the deadline is the first to learn the hand-off is over: gone, join again.
    clock += H;
    expect((await post('/api/peers/heartbeat', { peerId: x })).status).toBe(409);
    for (const p of [...rest, y]) await beat(p);
    expect((await beat(rest[0])).assignment.departing).toEqual([]);
    // Nor was it placed again meanwhile.
    expect((await holders(modelId)).flat()).not.toContain(x);

    // y hands off and goes silent: the sweep declares it gone, and it is listed no more, well before 60 s.
    await post('/api/peers/leave', { peerId: y, handoff: true });
    expect((await beat(rest[0])).assignment.departing).toHaveLength(1);
    await pass(4 * H, rest);
    coord!.membership.sweep();
    expect((await beat(rest[0])).assignment.departing).toEqual([]);
    expect(clock - ho.until).toBeLessThan(HANDOFF_MS);
  });

  it('a hand-off outlives a coordinator restart; a new join of the peer ends it', async () => {
    await start();
    const dbPath = coord!.store.path;
    const modelId = await register([2, 2]);
    for (const [p, v] of [
      ['a', 40],
      ['b', 30],
      ['c', 20],
    ] as const)
      await joinPeer(p, v);
    const leaver = (await holders(modelId)).find((l) => l.length === 2)![0];
    const stay = ['a', 'b', 'c'].filter((p) => p !== leaver);
    await post('/api/peers/leave', { peerId: leaver, handoff: true });
    await coord!.stop();
    await start(dbPath);
    const listed = (await beat(stay[0])).assignment.departing;
    expect(listed.map((d: any) => d.peerId)).toEqual([leaver]);
    // A join under the same id is a new session: placed again, not departing.
    expect((await joinPeer(leaver, 40)).status).toBe('assigned');
    expect((await beat(stay[0])).assignment.departing).toEqual([]);
  });

  it('a hand-off from a peer holding no stage is a no-op that says so; bad requests: 400/404', async () => {
    await start();
    // No model yet: the peer waits, holding nothing.
    expect((await joinPeer('idle', 10)).status).toBe('wait');
    const r = await post('/api/peers/leave', { peerId: 'idle', handoff: true });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ok: true, peerId: 'idle', handoff: null });
    expect(r.json.reason).toMatch(/holds no stage/);
    // Nothing changed: still alive, still told to wait for a model.
    expect(await beat('idle')).toMatchObject({ status: 'wait', reason: 'no model is registered yet' });

    const bad = await post('/api/peers/leave', { peerId: 'idle', handoff: 'yes' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/handoff must be true or false/);
    expect((await post('/api/peers/leave', { peerId: 'nobody', handoff: true })).status).toBe(404);
    await post('/api/peers/leave', { peerId: 'idle' });
    const gone = (await post('/api/peers/leave', { peerId: 'idle', handoff: true })).json;
    expect(gone).toMatchObject({ handoff: null, reason: expect.stringMatching(/gone already/) });
    expect((await call('GET', '/api/health')).json.ok).toBe(true);
  });
});
