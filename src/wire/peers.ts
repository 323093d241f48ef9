/** What peers report and what volunteers see: measured links, credits, teams, leaderboards, payer balances. */

/** One measured link of a heartbeat (the coordinator turns successive counters into bytes/s). */
export interface LinkReport {
  peerId: string;
  bytesSent: number;
  bytesReceived: number;
  rttMs: number | null;
}

/** A heartbeat carries at most this many links. */
export const MAX_LINKS = 64;

export interface Team {
  id: string;
  name: string;
  members: number;
  createdAt: number;
}

/** POST /api/teams/:id/members: the peer signs the nonce with its key. */
export interface TeamJoin {
  peerId: string;
  nonce: string;
  signature: string;
}

export type LeaderboardBy = 'volunteer' | 'team';

export interface LeaderboardRow {
  rank: number;
  id: string;
  name: string;
  team: string | null;
  /** FLOPs as decimal strings (they outgrow a double's integers). */
  verifiedFlops: string;
  pendingFlops: string;
  recentAverage: number;
  peers: number;
}

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
