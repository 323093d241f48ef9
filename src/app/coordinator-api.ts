/**
 * The coordinator's swarm API as the Researcher, Volunteer and Leaderboards pages see it (same origin: the app
 * proxies /api and /v1). Shapes are src/wire's (documented in src/coordinator/API.md). Errors carry the
 * coordinator's reason and code.
 */
import { ApiError, jsonClient } from './http.ts';

/** Re-exported: callers of this client catch its errors. */
export { ApiError };
// The wire shapes the coordinator answers with, declared once in src/wire (types only: no server code is bundled).
import type {
  Leaderboard,
  LeaderboardBy,
  MetricRecord,
  ModelDetail,
  ModelProposal,
  ModelSummary,
  PayerBalance,
  PeerCredits,
  Team,
  TeamJoin,
  ThroughputPoint,
  Topology,
  Verification,
} from '../wire/index.ts';
export type {
  Boundary,
  FlatModelProposal,
  Leaderboard,
  LeaderboardBy,
  LeaderboardRow,
  MetricRecord,
  ModelDetail,
  ModelProposal,
  ModelSummary,
  PayerBalance,
  PeerCredits,
  RunSpec,
  SpecModelProposal,
  StageView,
  Team,
  TeamJoin,
  ThroughputPoint,
  Topology,
  TopologyLink,
  TopologyPeer,
  TopologyStage,
  Verification,
  VerificationEpoch,
} from '../wire/index.ts';

export interface SwarmApi {
  models(): Promise<ModelSummary[]>;
  model(id: string): Promise<ModelDetail>;
  metrics(id: string): Promise<MetricRecord[]>;
  throughput(id: string): Promise<ThroughputPoint[]>;
  topology(id: string): Promise<Topology>;
  verification(id: string): Promise<Verification>;
  propose(p: ModelProposal): Promise<ModelDetail>;
  leaderboard(id: string, by: LeaderboardBy): Promise<Leaderboard>;
  credits(peerId: string): Promise<PeerCredits>;
  /** Ids of every peer that ever joined (GET /api/peers). */
  peers(): Promise<string[]>;
  teams(): Promise<Team[]>;
  createTeam(name: string): Promise<Team>;
  joinTeam(teamId: string, body: TeamJoin): Promise<{ teamId: string; peerId: string }>;
  payer(address: string): Promise<PayerBalance>;
}

const enc = encodeURIComponent;

/** `fetcher` and `base` are for tests; the pages use the global fetch, same origin. */
export function swarmApi(fetcher: typeof fetch = (...a) => fetch(...a), base = ''): SwarmApi {
  const { call, post } = jsonClient(fetcher, base);
  return {
    models: async () => (await call<{ models: ModelSummary[] }>('/api/models')).models,
    model: async (id) => (await call<{ model: ModelDetail }>(`/api/models/${enc(id)}`)).model,
    async metrics(id) {
      // Paged by id (at most 1000 a call): read to the end so a reload shows the whole curve.
      const all: MetricRecord[] = [];
      let since = 0;
      for (let page = 0; page < 50; page++) {
        const r = await call<{ metrics: MetricRecord[]; next: number }>(
          `/api/models/${enc(id)}/metrics?since=${since}&limit=1000`,
        );
        all.push(...r.metrics);
        if (r.metrics.length < 1000 || r.next <= since) break;
        since = r.next;
      }
      return all;
    },
    throughput: async (id) =>
      (await call<{ points: ThroughputPoint[] }>(`/api/models/${enc(id)}/throughput?limit=1000`)).points,
    topology: (id) => call<Topology>(`/api/models/${enc(id)}/topology`),
    verification: (id) => call<Verification>(`/api/models/${enc(id)}/verification`),
    propose: async (p) => (await call<{ model: ModelDetail }>('/api/models', post(p))).model,
    leaderboard: (id, by) => call<Leaderboard>(`/api/models/${enc(id)}/leaderboard?by=${by}`),
    credits: (peerId) => call<PeerCredits>(`/api/peers/${enc(peerId)}/credits`),
    peers: async () => (await call<{ peers: Array<{ peerId: string }> }>('/api/peers')).peers.map((p) => p.peerId),
    teams: async () => (await call<{ teams: Team[] }>('/api/teams')).teams,
    async createTeam(name) {
      const t = await call<Omit<Team, 'members'>>('/api/teams', post({ name }));
      return { members: 0, ...t };
    },
    joinTeam: (teamId, body) => call(`/api/teams/${enc(teamId)}/members`, post(body)),
    payer: (address) => call<PayerBalance>(`/api/payers/${enc(address)}`),
  };
}

export const api = swarmApi();
