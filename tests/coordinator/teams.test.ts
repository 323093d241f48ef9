import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { recentAverage, RAC_HALF_LIFE_MS } from '../../src/coordinator/credits.ts';
import { teamJoinMessage } from '../../src/coordinator/teams.ts';
import { memoryLog, tempDir, tinyConfig } from './fixtures.ts';

const DAY = 24 * 3600 * 1000;

const WEEK_S = 7 * 24 * 3600;

describe('recent average credit (BOINC-style, half-life 7 days, in FLOP/s)', () => {
  it('one grant is worth flops · ln2 / (7 days in s) when fresh, and halves every 7 days', () => {
    const now = 100 * DAY;
    expect(recentAverage([{ flops: WEEK_S * 1000, at: now }], now)).toBeCloseTo(1000 * Math.LN2, 9);
    const fresh = recentAverage([{ flops: 1e12, at: now }], now);
    expect(recentAverage([{ flops: 1e12, at: now }], now + RAC_HALF_LIFE_MS) / fresh).toBeCloseTo(0.5, 12);
    expect(recentAverage([{ flops: 1e12, at: now }], now + 3 * RAC_HALF_LIFE_MS) / fresh).toBeCloseTo(0.125, 12);
    expect(recentAverage([], now)).toBe(0);
  });

  it('a volunteer verified at r FLOP/s for long averages about r FLOP/s (within the daily discretisation)', () => {
    const now = 400 * DAY;
    const r = 5e9;
    const grants = Array.from({ length: 400 }, (_, d) => ({ flops: r * 86_400, at: d * DAY }));
    // Σ r·2^(−k/7)·ln2/7 over whole days = r · (ln2/7) / (1 − 2^(−1/7)) ≈ 1.0503 r: the continuous rate, sampled daily.
    expect(recentAverage(grants, now - DAY) / r).toBeCloseTo(Math.LN2 / 7 / (1 - Math.pow(2, -1 / 7)), 6);
  });
});

/** Teams, signed joins, leaderboards and a peer's credits from a real coordinator; the ledger tables are seeded. */
describe('coordinator: teams, leaderboards and credits', () => {
  const tmp = tempDir();
  const dbPath = join(tmp.dir, 'coordinator.db');
  const logs = memoryLog();
  const T = 1_800_000_000_000;
  let coord: Coordinator;
  let modelId: string;
  let k1: PrivateKey, k2: PrivateKey, stranger: PrivateKey;
  let p1: string, p2: string;
  const teams: Record<string, string> = {};
  const wallet = '0x1111111111111111111111111111111111111111';

  const start = () => Coordinator.start({ dbPath, heartbeatMs: 600_000, log: logs.log, now: () => T });
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
  async function signedJoin(key: PrivateKey, teamId: string, nonce: string, signedTeam = teamId) {
    const peerId = peerIdFromPrivateKey(key).toString();
    const signature = Buffer.from(
      await key.sign(new TextEncoder().encode(teamJoinMessage(signedTeam, peerId, nonce))),
    ).toString('base64');
    return { peerId, nonce, signature };
  }

  beforeAll(async () => {
    [k1, k2, stranger] = await Promise.all([
      generateKeyPair('Ed25519'),
      generateKeyPair('Ed25519'),
      generateKeyPair('Ed25519'),
    ]);
    p1 = peerIdFromPrivateKey(k1).toString();
    p2 = peerIdFromPrivateKey(k2).toString();
    coord = await start();
    modelId = (
      await post('/api/models', {
        name: 'One stage',
        config: tinyConfig,
        layout: [4],
        codec: 'none',
        microBatches: 1,
        batch: 1,
        pricePer1kTokens: 0,
      })
    ).json.model.id;
    for (const p of [p1, p2])
      expect((await post('/api/peers/join', { peerId: p, kind: 'browser', tokensPerSecond: 10 })).json.status).toBe(
        'assigned',
      );
  });
  afterAll(async () => {
    await coord.stop();
    tmp.cleanup();
  });

  it('creates teams with a reason for every refusal', async () => {
    for (const name of ['Red', 'Blue', 'Empty']) {
      const r = await post('/api/teams', { name });
      expect(r.status).toBe(201);
      expect(r.json).toEqual({
        id: expect.stringMatching(new RegExp(`^${name.toLowerCase()}-[0-9a-f]{6}$`)),
        name,
        createdAt: T,
      });
      teams[name] = r.json.id;
    }
    const cases: Array<[unknown, number, RegExp]> = [
      [{ name: '  red ' }, 409, /exists already/],
      [{ name: '' }, 400, /name must be a non-empty string/],
      [{ name: '   ' }, 400, /1 to 48 characters/],
      [{ name: 'x'.repeat(49) }, 400, /1 to 48 characters/],
      [{ name: 'bell\u0007' }, 400, /control characters/],
      [{ name: 'Green', colour: 'green' }, 400, /unknown field colour/],
    ];
    for (const [body, status, reason] of cases) {
      const r = await post('/api/teams', body);
      expect([r.status, r.json.error, r.json.code]).toEqual([
        status,
        expect.stringMatching(reason),
        expect.any(String),
      ]);
    }
    expect((await get('/api/teams')).json.teams.map((t: any) => [t.name, t.members])).toEqual([
      ['Red', 0],
      ['Blue', 0],
      ['Empty', 0],
    ]);
  });

  it(
    'a peer joins a team with its key; forged, misdirected and replayed joins are refused; joining another ' +
      'team moves it',
    async () => {
      const ok = await post(`/api/teams/${teams.Blue}/members`, await signedJoin(k1, teams.Blue, 'n1'));
      expect([ok.status, ok.json]).toEqual([201, { teamId: teams.Blue, peerId: p1 }]);
      // Replayed: the same signed body again.
      const replay = await post(`/api/teams/${teams.Blue}/members`, await signedJoin(k1, teams.Blue, 'n1'));
      expect([replay.status, replay.json.error]).toEqual([409, expect.stringMatching(/nonce n1 was used/)]);
      // Forged: someone else's key signs for p1.
      const forged = { ...(await signedJoin(stranger, teams.Red, 'n2')), peerId: p1 };
      expect((await post(`/api/teams/${teams.Red}/members`, forged)).status).toBe(401);
      // A join signed for Blue, posted to Red.
      const misdirected = await post(
        `/api/teams/${teams.Red}/members`,
        await signedJoin(k1, teams.Red, 'n3', teams.Blue),
      );
      expect([misdirected.status, misdirected.json.error]).toEqual([401, expect.stringMatching(/signature is not/)]);
      const bad: Array<[string, unknown, number, RegExp]> = [
        ['nope-123', await signedJoin(k1, 'nope-123', 'n4'), 404, /unknown team/],
        [teams.Red, { peerId: 'not-a-libp2p-id', nonce: 'n5', signature: 'AAAA' }, 400, /not a libp2p peer id/],
        [teams.Red, { ...(await signedJoin(k1, teams.Red, 'n6')), nonce: 'has space' }, 400, /nonce/],
        [teams.Red, { ...(await signedJoin(k1, teams.Red, 'n7')), signature: '***' }, 400, /signature/],
        [teams.Red, { peerId: p1, nonce: 'n8' }, 400, /signature must be a non-empty string/],
      ];
      for (const [team, body, status, reason] of bad) {
        const r = await post(`/api/teams/${team}/members`, body);
        expect([r.status, r.json.error]).toEqual([status, expect.stringMatching(reason)]);
      }
      // Refused joins changed nothing; a fresh nonce moves p1 to Red.
      expect((await get('/api/teams')).json.teams.map((t: any) => [t.name, t.members])).toEqual([
        ['Red', 0],
        ['Blue', 1],
        ['Empty', 0],
      ]);
      expect((await post(`/api/teams/${teams.Red}/members`, await signedJoin(k1, teams.Red, 'n9'))).status).toBe(201);
      expect((await post(`/api/teams/${teams.Blue}/members`, await signedJoin(k2, teams.Blue, 'n1'))).status).toBe(201);
      expect((await get('/api/teams')).json.teams.map((t: any) => [t.name, t.members])).toEqual([
        ['Red', 1],
        ['Blue', 1],
        ['Empty', 0],
      ]);
      const topo = (await get(`/api/models/${modelId}/topology`)).json;
      const team = Object.fromEntries(topo.stages[0].peers.map((p: any) => [p.peerId, p.team]));
      expect(team).toEqual({ [p1]: 'Red', [p2]: 'Blue' });
    },
  );

  it(
    'leaderboards: verified FLOPs first (exact beyond 2^53), then the recent average; wallets gather their ' +
      'peers; teams add up members',
    async () => {
      const db = coord.store.connection;
      const epoch = db.prepare(
        `INSERT INTO epochs (model_id, epoch, closed_at, through_step, root, leaves, verdicts, audits, bindings) ` +
          `VALUES (?, ?, ?, 0, NULL, '[]', '[]', '[]', '[]')`,
      );
      const credit = db.prepare('INSERT INTO credits (model_id, epoch, peer_id, flops, caught) VALUES (?, ?, ?, ?, 0)');
      [
        [1, T - 70 * DAY],
        [2, T - 14 * DAY],
        [3, T - 7 * DAY],
        [4, T],
      ].forEach(([n, at]) => epoch.run(modelId, n, at));
      credit.run(modelId, 1, 'peer-five', '90071992547409930');
      credit.run(modelId, 2, p1, '1000');
      credit.run(modelId, 2, 'peer-four', '3000');
      credit.run(modelId, 3, 'peer-three', '2000');
      credit.run(modelId, 4, p1, '2000');
      credit.run(modelId, 4, p2, '1000');
      for (const p of [p2, 'peer-three'])
        db.prepare(
          'INSERT INTO bindings (peer_id, wallet, nonce, expiry, wallet_signature, peer_signature, at) VALUES ' +
            "(?, ?, '1', '1', '0x', '0x', ?)",
        ).run(p, wallet, T);
      db.prepare(
        `INSERT INTO receipts (model_id, round, stage, replica, replicas, step, micro, kind, flops, input_hash,
          output_hash, peer_id, signature, at)
       VALUES (?, 0, 0, 0, 1, 9, 0, 'train', 500, '0x1', '0x2', ?, '0x00', ?)`,
      ).run(modelId, p1, T);
      const rac = (...g: Array<[number, number]>) =>
        recentAverage(
          g.map(([flops, ageDays]) => ({ flops, at: T - ageDays * DAY })),
          T,
        );

      const { status, json } = await get(`/api/models/${modelId}/leaderboard?by=volunteer`);
      expect(status).toBe(200);
      expect(json).toMatchObject({ modelId, by: 'volunteer' });
      // Three volunteers tie at 3000 verified: the recent average orders them (p1's credit is the most recent).
      expect(json.rows).toEqual([
        {
          rank: 1,
          id: 'peer-five',
          name: 'peer-five',
          team: null,
          verifiedFlops: '90071992547409930',
          pendingFlops: '0',
          recentAverage: rac([90071992547409936, 70]),
          peers: 1,
        },
        {
          rank: 2,
          id: p1,
          name: `${p1.slice(0, 6)}…${p1.slice(-4)}`,
          team: 'Red',
          verifiedFlops: '3000',
          pendingFlops: '500',
          recentAverage: rac([1000, 14], [2000, 0]),
          peers: 1,
        },
        {
          rank: 3,
          id: wallet,
          name: '0x1111…1111',
          team: 'Blue',
          verifiedFlops: '3000',
          pendingFlops: '0',
          recentAverage: rac([1000, 0], [2000, 7]),
          peers: 2,
        },
        {
          rank: 4,
          id: 'peer-four',
          name: 'peer-four',
          team: null,
          verifiedFlops: '3000',
          pendingFlops: '0',
          recentAverage: rac([3000, 14]),
          peers: 1,
        },
      ]);
      const byTeam = (await get(`/api/models/${modelId}/leaderboard?by=team`)).json;
      expect(byTeam.rows.map((r: any) => [r.rank, r.name, r.verifiedFlops, r.pendingFlops, r.peers])).toEqual([
        [1, 'Red', '3000', '500', 1],
        [2, 'Blue', '1000', '0', 1],
        [3, 'Empty', '0', '0', 0],
      ]);
      expect(byTeam.rows[1]).toMatchObject({ id: teams.Blue, team: null, recentAverage: rac([1000, 0]) });
      expect((await get(`/api/models/${modelId}/leaderboard`)).json.by).toBe('volunteer');
      expect((await get(`/api/models/${modelId}/leaderboard?by=country`)).status).toBe(400);
      expect((await get('/api/models/nope/leaderboard')).status).toBe(404);
    },
  );

  it("a peer's own credits: per model verified, pending and recent average, with its wallet and team", async () => {
    const r = await get(`/api/peers/${p2}/credits`);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      peerId: p2,
      wallet,
      team: { id: teams.Blue, name: 'Blue' },
      models: [
        {
          modelId,
          verifiedFlops: '1000',
          pendingFlops: '0',
          recentAverage: expect.closeTo((1000 * Math.LN2) / WEEK_S, 12),
        },
      ],
    });
    expect((await get(`/api/peers/${p1}/credits`)).json.models[0]).toMatchObject({
      verifiedFlops: '3000',
      pendingFlops: '500',
    });
    expect((await get('/api/peers/never-seen/credits')).status).toBe(404);
    expect((await get('/api/peers/bad%20id/credits')).status).toBe(400);
  });

  it('a restart keeps teams, memberships and used nonces', async () => {
    await coord.stop();
    coord = await start();
    expect((await get('/api/teams')).json.teams.map((t: any) => [t.id, t.members])).toEqual([
      [teams.Red, 1],
      [teams.Blue, 1],
      [teams.Empty, 0],
    ]);
    expect((await get(`/api/peers/${p1}/credits`)).json.team).toEqual({ id: teams.Red, name: 'Red' });
    expect((await post(`/api/teams/${teams.Red}/members`, await signedJoin(k1, teams.Red, 'n9'))).status).toBe(409);
  });
});
