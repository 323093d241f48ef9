/**
 * Credits as volunteer-computing users know them (BOINC, Folding@home): verified credit is what settled epochs
 * granted (FLOPs of work that passed settlement's checks, src/ledger/verdict.ts); pending is what accepted
 * receipts of the open epoch claim; the recent average credit (RAC) is BOINC's — verified credit per day,
 * exponentially decayed with a half-life of 7 days, so it shows what a volunteer does lately rather than ever —
 * expressed per second (credit per day ÷ 86,400): a FLOP/s figure comparable with a device's speed. A volunteer is
 * a wallet (all the peers bound to it) or, unbound, a peer; a team adds up its members.
 */
import { HttpError } from './errors.ts';
import type { Store } from './store.ts';
import type { Teams, TeamRef } from './teams.ts';
import { PEER_ID, string } from './validate.ts';
import type { LeaderboardRow } from '../wire/index.ts';

type Row = Record<string, unknown>;

export const RAC_HALF_LIFE_MS = 7 * 24 * 3600 * 1000;

/** One grant of verified credit: `flops` at time `at` (an epoch's close). */
export interface Grant {
  flops: number;
  at: number;
}

/**
 * BOINC's recent average credit in closed form, in FLOP/s: Σ flops · (ln 2 / H) · 2^(−age / H) with H in
 * seconds. A volunteer whose work is verified at r FLOP/s for long has RAC → r; after stopping, it halves
 * every 7 days.
 */
export function recentAverage(grants: readonly Grant[], now: number, halfLifeMs = RAC_HALF_LIFE_MS): number {
  let sum = 0;
  for (const g of grants) sum += g.flops * Math.pow(2, -Math.max(0, now - g.at) / halfLifeMs);
  return (sum * Math.LN2 * 1000) / halfLifeMs;
}

interface Tally {
  verified: bigint;
  pending: bigint;
  grants: Grant[];
}

export type { LeaderboardRow };

/** Long ids (peer ids, addresses) shortened for display: first 6 and last 4 characters. */
export const shortId = (id: string) => (id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-4)}` : id);

export class Credits {
  private readonly store: Store;
  private readonly teams: Teams;
  private readonly now: () => number;

  constructor(opts: { store: Store; teams: Teams; now: () => number }) {
    this.store = opts.store;
    this.teams = opts.teams;
    this.now = opts.now;
  }

  private get db() {
    return this.store.connection;
  }

  /** Per peer: verified FLOPs (settled credits), pending FLOPs (unsettled receipts) and each grant for the RAC. */
  private tallies(modelId: string): Map<string, Tally> {
    const out = new Map<string, Tally>();
    const of = (p: string) => {
      let t = out.get(p);
      if (!t) out.set(p, (t = { verified: 0n, pending: 0n, grants: [] }));
      return t;
    };
    const credits = this.db
      .prepare(
        'SELECT c.peer_id, c.flops, e.closed_at FROM credits c JOIN epochs e ON e.model_id = c.model_id AND ' +
          'e.epoch = c.epoch WHERE c.model_id = ? AND c.caught = 0',
      )
      .all(modelId) as Row[];
    for (const r of credits) {
      const f = BigInt(String(r.flops));
      if (f === 0n) continue;
      const t = of(String(r.peer_id));
      t.verified += f;
      t.grants.push({ flops: Number(f), at: Number(r.closed_at) });
    }
    const pending = this.db
      .prepare(
        'SELECT peer_id, CAST(SUM(flops) AS TEXT) AS f FROM receipts WHERE model_id = ? AND epoch IS NULL ' +
          'GROUP BY peer_id',
      )
      .all(modelId) as Row[];
    for (const r of pending) of(String(r.peer_id)).pending += BigInt(String(r.f));
    return out;
  }

  private modelOr404(id: string): void {
    if (!this.store.getModel(id)) throw new HttpError('notFound', `unknown model ${JSON.stringify(id.slice(0, 80))}`);
  }

  private bindings(): Map<string, string> {
    return new Map(
      (this.db.prepare('SELECT peer_id, wallet FROM bindings').all() as Row[]).map((r) => [
        String(r.peer_id),
        String(r.wallet),
      ]),
    );
  }

  /** GET /api/models/:id/leaderboard?by=volunteer|team */
  leaderboard(modelId: string, byRaw: string | null) {
    this.modelOr404(modelId);
    const by = byRaw === null || byRaw === '' ? 'volunteer' : byRaw;
    if (by !== 'volunteer' && by !== 'team')
      throw new HttpError(
        'badRequest',
        `query parameter by must be volunteer or team, got ${JSON.stringify(by.slice(0, 40))}`,
      );
    const tallies = this.tallies(modelId);
    const members = this.teams.memberships();
    const now = this.now();
    type Group = { id: string; name: string; team: TeamRef | null; peers: string[] };
    let groups: Group[];
    if (by === 'team') {
      const byTeam = new Map<string, string[]>();
      for (const [peer, t] of members) byTeam.set(t.id, [...(byTeam.get(t.id) ?? []), peer]);
      groups = this.teams.all().map((t) => ({ id: t.id, name: t.name, team: null, peers: byTeam.get(t.id) ?? [] }));
    } else {
      const wallets = this.bindings();
      const byKey = new Map<string, string[]>();
      for (const peer of tallies.keys()) {
        const key = wallets.get(peer) ?? peer;
        byKey.set(key, [...(byKey.get(key) ?? []), peer]);
      }
      groups = [...byKey].map(([id, peers]) => ({
        id,
        name: shortId(id),
        team: peers.map((p) => members.get(p)).find((t) => t) ?? null,
        peers,
      }));
    }
    const rows = groups.map((g) => {
      let verified = 0n;
      let pending = 0n;
      const grants: Grant[] = [];
      for (const p of g.peers) {
        const t = tallies.get(p);
        if (!t) continue;
        verified += t.verified;
        pending += t.pending;
        grants.push(...t.grants);
      }
      return {
        id: g.id,
        name: g.name,
        team: g.team?.name ?? null,
        verified,
        pending,
        recentAverage: recentAverage(grants, now),
        peers: g.peers.length,
      };
    });
    rows.sort((a, b) =>
      a.verified !== b.verified
        ? a.verified > b.verified
          ? -1
          : 1
        : b.recentAverage - a.recentAverage || (a.id < b.id ? -1 : 1),
    );
    return {
      modelId,
      by,
      rows: rows.map(
        (r, i): LeaderboardRow => ({
          rank: i + 1,
          id: r.id,
          name: r.name,
          team: r.team,
          verifiedFlops: r.verified.toString(),
          pendingFlops: r.pending.toString(),
          recentAverage: r.recentAverage,
          peers: r.peers,
        }),
      ),
    };
  }

  /** GET /api/peers/:peerId/credits: this peer's own credits per model it worked on or holds, its wallet and team. */
  peer(peerIdRaw: string) {
    const peerId = string(peerIdRaw, 'peerId', PEER_ID, 128);
    const team = this.teams.teamOf(peerId);
    if (!this.store.getPeer(peerId) && !team)
      throw new HttpError('notFound', `unknown peer ${peerId}: it never joined the swarm or a team`);
    const wallet = this.bindings().get(peerId) ?? null;
    const holds = new Set(this.store.assignmentsOf(peerId).map((a) => a.modelId));
    const now = this.now();
    const models = this.store.listModels().flatMap((m) => {
      const t = this.tallies(m.id).get(peerId);
      if (!t && !holds.has(m.id)) return [];
      return [
        {
          modelId: m.id,
          verifiedFlops: (t?.verified ?? 0n).toString(),
          pendingFlops: (t?.pending ?? 0n).toString(),
          recentAverage: recentAverage(t?.grants ?? [], now),
        },
      ];
    });
    return { peerId, wallet, team, models };
  }
}
