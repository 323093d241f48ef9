import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, swarmApi, type SwarmApi } from '../../src/app/coordinator-api.ts';
import { checkDraft, DEFAULT_DRAFT, fieldOfError } from '../../src/app/researcher/proposal.ts';
import { lossSeries, mergeMetrics, topologyGraph } from '../../src/app/researcher/shape.ts';
import { readSse } from '../../src/app/sse.ts';
import { signTeamJoin } from '../../src/app/volunteer/teams.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';

/**
 * The pages' API client against a real coordinator (in-memory database, loopback port): what the Researcher
 * page proposes and reads, the live stream's snapshot through the page's SSE reader, and a team joined with a
 * peer key signature exactly as the Volunteer page makes it.
 */
describe('app ↔ coordinator (issue 8 routes)', () => {
  let coord: Coordinator;
  let api: SwarmApi;
  let modelId: string;

  beforeAll(async () => {
    coord = await Coordinator.start({ dbPath: ':memory:', heartbeatMs: 600_000, log: () => {} });
    api = swarmApi(fetch, coord.url);
  });
  afterAll(async () => {
    await coord.stop();
  });

  it("proposes the form's default model, which then lists with its layout and codec", async () => {
    const { proposal } = checkDraft({
      ...DEFAULT_DRAFT,
      name: 'Form default',
      id: 'form-default',
      codec: 'int8',
      pricePer1kTokens: '0.0001',
    });
    const m = await api.propose(proposal!);
    modelId = m.id;
    expect(m).toMatchObject({ id: 'form-default', layout: [1, 1, 1, 1], codec: 'int8', pricePer1kTokens: 0.0001 });
    expect((await api.models()).map((x) => x.id)).toEqual(['form-default']);
    expect((await api.model('form-default')).spec).toEqual(proposal!.spec);
  });

  it('shows a refusal at the field it names, and a taken id as a conflict', async () => {
    const { spec } = checkDraft({ ...DEFAULT_DRAFT, name: 'x' }).proposal!;
    const bad = await api.propose({ name: 'x', spec: { ...spec, model: { ...spec.model, heads: 5 } } }).catch((e) => e);
    expect(bad).toBeInstanceOf(ApiError);
    expect(bad.status).toBe(400);
    expect(fieldOfError(bad.message)).toMatch(/heads|dModel/);
    const taken = await api
      .propose(checkDraft({ ...DEFAULT_DRAFT, name: 'again', id: 'form-default' }).proposal!)
      .catch((e) => e);
    expect(taken.status).toBe(409);
  });

  it('reads metrics, throughput and topology in the shapes the charts and diagram take', async () => {
    const peers = [];
    for (let i = 0; i < 4; i++) {
      const id = `peer-${i}`;
      const r = await fetch(`${coord.url}/api/peers/join`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ peerId: id, kind: i % 2 ? 'browser' : 'node', tokensPerSecond: 50 + i }),
      });
      expect(r.status).toBe(200);
      peers.push(id);
    }
    for (const [step, loss] of [
      [0, 3.5],
      [1, 3.2],
    ] as const) {
      const r = await fetch(`${coord.url}/api/models/${modelId}/metrics`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ step, loss, tokens: 512 }),
      });
      expect(r.ok).toBe(true);
    }
    const metrics = await api.metrics(modelId);
    expect(lossSeries(mergeMetrics([], metrics))).toEqual([
      { step: 0, train: 3.5 },
      { step: 1, train: 3.2 },
    ]);
    expect(Array.isArray(await api.throughput(modelId))).toBe(true);
    const topo = await api.topology(modelId);
    const { nodes } = topologyGraph(topo);
    expect(nodes.filter((n) => n.type === 'stage')).toHaveLength(4);
    expect(
      nodes
        .filter((n) => n.type === 'peer')
        .map((n) => n.id)
        .sort(),
    ).toEqual(peers);
    expect((await api.peers()).sort()).toEqual(peers);
    expect(topo.boundaries.map((b) => [b.after, b.codec, b.rawBytesPerToken])).toEqual([
      [0, 'int8', 512],
      [1, 'int8', 512],
      [2, 'int8', 512],
    ]);
    const v = await api.verification(modelId);
    expect(v).toMatchObject({ modelId, epochs: [] });
  });

  it('streams the live snapshot the Researcher page starts from', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${coord.url}/api/models/${modelId}/live`, { signal: ctl.signal });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const seen: string[] = [];
    for await (const e of readSse(res.body!, ctl.signal)) {
      seen.push(e.event);
      if (e.event === 'snapshot')
        expect(JSON.parse(e.data).metrics.map((m: { step: number }) => m.step)).toEqual([0, 1]);
      if (e.event === 'topology') break;
    }
    ctl.abort();
    expect(seen).toEqual(['snapshot', 'topology']);
  });

  it('creates a team and joins it with the peer key signature; credits and the team board then show it', async () => {
    const key = await generateKeyPair('Ed25519');
    const peerId = peerIdFromPrivateKey(key).toString();
    const team = await api.createTeam('Night owls');
    expect(team).toMatchObject({ name: 'Night owls', members: 0 });
    const body = await signTeamJoin(key, peerId, team.id);
    expect(await api.joinTeam(team.id, body)).toEqual({ teamId: team.id, peerId });
    // The same signed body again is a replay.
    expect((await api.joinTeam(team.id, body).catch((e) => e)).status).toBe(409);
    // Another key's signature is not this peer's.
    const other = await signTeamJoin(await generateKeyPair('Ed25519'), peerId, team.id);
    expect((await api.joinTeam(team.id, other).catch((e) => e)).status).toBe(401);
    expect((await api.teams()).find((t) => t.id === team.id)?.members).toBe(1);
    expect((await api.credits(peerId)).team).toEqual({ id: team.id, name: 'Night owls' });
    const board = await api.leaderboard(modelId, 'team');
    expect(board).toMatchObject({ modelId, by: 'team' });
    expect(Array.isArray((await api.leaderboard(modelId, 'volunteer')).rows)).toBe(true);
  });
});
