/**
 * The coordinator's swarm API as the Researcher, Volunteer and Leaderboards pages see it (same origin: the app
 * proxies /api and /v1). Shapes follow src/coordinator/API.md and the issue-8 contract (topology, throughput,
 * verification, teams, leaderboards, credits). Errors carry the coordinator's reason and code.
 */
import { ApiError, jsonClient } from './http.ts';

/** Re-exported: callers of this client catch its errors. */
export { ApiError };
// The wire shapes the coordinator answers with, as it declares them (type-only: nothing of the server is bundled).
import type { MetricRecord, ThroughputPoint } from '../coordinator/types.ts';
import type { LeaderboardRow } from '../coordinator/credits.ts';
export type { LeaderboardRow, MetricRecord, ThroughputPoint };

export interface ModelConfigInput {
  vocab: number;
  dModel: number;
  heads: number;
  layers: number;
  context: number;
  mlpRatio?: number;
  seed?: number;
}

export interface ModelSummary {
  id: string;
  name: string;
  codec: string;
  microBatches: number;
  batch: number;
  pricePer1kTokens: number;
  createdAt: number;
  stages: number;
  peers: number;
  covered: boolean;
  bottleneck: { stage: number; tokensPerSecond: number } | null;
}

export interface ModelDetail extends ModelSummary {
  config: ModelConfigInput;
  layout: number[];
  steps: { running: number; done: number; failed: number };
}

export interface TopologyPeer {
  peerId: string;
  replica: number;
  kind: 'node' | 'browser';
  tokensPerSecond: number;
  team: string | null;
}

export interface TopologyStage {
  index: number;
  firstLayer: number;
  endLayer: number;
  hasEmbedding: boolean;
  hasHead: boolean;
  peers: TopologyPeer[];
}

export interface TopologyLink {
  from: string;
  to: string;
  kind: 'pipeline' | 'sync';
  bytesPerSecond: number;
  rttMs: number | null;
  at: number;
}

export interface Boundary {
  /** Between stage `after` and stage `after + 1`. */
  after: number;
  codec: string;
  /** Measured activation + gradient bytes per token over this boundary; null until measured. */
  bytesPerToken: number | null;
  /** Uncompressed float32 activation + gradient: dModel · 4 · 2. */
  rawBytesPerToken: number;
}

export interface Topology {
  modelId: string;
  stages: TopologyStage[];
  links: TopologyLink[];
  boundaries: Boundary[];
}

export interface VerificationEpoch {
  epoch: number;
  /** 'pending': the open epoch, judged now as settlement would judge it. */
  status?: 'settled' | 'pending';
  units: number;
  audited: number;
  mismatches: number;
  caught: string[];
  share: number;
}

export interface Verification {
  modelId: string;
  epochs: VerificationEpoch[];
  totals: { units: number; audited: number; mismatches: number; share: number };
}

export interface Team {
  id: string;
  name: string;
  members: number;
  createdAt: number;
}

export type LeaderboardBy = 'volunteer' | 'team';

export interface Leaderboard {
  modelId: string;
  by: LeaderboardBy;
  rows: LeaderboardRow[];
}

export interface PeerCredits {
  peerId: string;
  wallet: string | null;
  team: { id: string; name: string } | null;
  models: Array<{ modelId: string; verifiedFlops: string; pendingFlops: string; recentAverage: number }>;
}

export interface PayerBalance {
  payer: string;
  /** Wei, decimal strings. */
  deposit: string;
  uncharged: string;
  inFlight: string;
  available: string;
}

/** A model proposal: the body of POST /api/models (src/coordinator/registry.ts parseModelInput). */
export interface ModelProposal {
  id?: string;
  name: string;
  config: ModelConfigInput;
  layout: number[];
  codec: string;
  microBatches: number;
  batch: number;
  pricePer1kTokens: number;
}

export interface TeamJoin {
  peerId: string;
  nonce: string;
  signature: string;
}

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
