/**
 * Measured links between peers. With each heartbeat a worker reports, per connected peer, the bytes its
 * tensor transport sent to and received from it (counters that only grow while its transport lives) and the
 * round trip. Successive reports of one (reporter, peer) pair become a rate in bytes/s; a link is `pipeline`
 * between different stages (activations one way, gradients the other) and `sync` within a stage (replicas
 * summing gradients). Bytes sent over a boundary between adjacent stages, divided by the tokens of the steps
 * finished over the same time, give the boundary's measured bytes per token — what the codec really costs.
 * Schema: migration 4 in store.ts; the SQL of links lives here.
 */
import { HttpError } from './errors.ts';
import type { Store } from './store.ts';
import { finite, integer, object, onlyKeys, PEER_ID, string } from './validate.ts';
import { MAX_LINKS, type Boundary, type LinkKind, type LinkReport, type TopologyLink } from '../wire/index.ts';

type Row = Record<string, unknown>;

// The shapes of heartbeat links and of the topology's links and boundaries are the wire's.
export { MAX_LINKS };
export type { LinkKind, LinkReport };
export type LinkView = TopologyLink;
export type BoundaryView = Boundary;

/** The `links` field of a heartbeat: at most 64 entries, one per peer, counters as non-negative integers. */
export function parseLinks(v: unknown, self: string): LinkReport[] {
  if (!Array.isArray(v))
    throw new HttpError('badRequest', 'links must be an array of { peerId, bytesSent, bytesReceived, rttMs }');
  if (v.length > MAX_LINKS) throw new HttpError('badRequest', `links: at most ${MAX_LINKS} entries, got ${v.length}`);
  const seen = new Set<string>();
  return v.map((raw, i) => {
    const o = object(raw, `links[${i}]`);
    onlyKeys(o, `links[${i}]`, ['peerId', 'bytesSent', 'bytesReceived', 'rttMs']);
    const peerId = string(o.peerId, `links[${i}].peerId`, PEER_ID, 128);
    if (peerId === self) throw new HttpError('badRequest', `links[${i}]: a peer has no link to itself`);
    if (seen.has(peerId)) throw new HttpError('badRequest', `links[${i}]: peer ${peerId} is listed twice`);
    seen.add(peerId);
    const rttMs = o.rttMs === undefined || o.rttMs === null ? null : finite(o.rttMs, `links[${i}].rttMs`, 0);
    if (rttMs !== null && rttMs > 600_000)
      throw new HttpError('badRequest', `links[${i}].rttMs must be at most 600000, got ${rttMs}`);
    return {
      peerId,
      bytesSent: integer(o.bytesSent, `links[${i}].bytesSent`, 0),
      bytesReceived: integer(o.bytesReceived, `links[${i}].bytesReceived`, 0),
      rttMs,
    };
  });
}

export class Links {
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  private get db() {
    return this.store.connection;
  }

  /**
   * Records one heartbeat's links. Only peers of the reporter's model count (a stale directory may name a
   * peer that moved on). A counter below the stored one means the reporter's transport was replaced (a new
   * pipeline configuration): what it shows now was sent since then, within the interval.
   */
  record(reporter: string, links: readonly LinkReport[], at: number): void {
    const mine = this.store.assignmentsOf(reporter)[0];
    if (!mine || links.length === 0) return;
    const stageOf = new Map(this.store.listAssignments(mine.modelId).map((a) => [a.peerId, a.stage]));
    const prior = this.db.prepare('SELECT * FROM links WHERE model_id = ? AND from_peer = ? AND to_peer = ?');
    const upsert = this.db.prepare(
      `INSERT INTO links (model_id, from_peer, to_peer, kind, bytes_sent, bytes_received, bytes_per_second, rtt_ms,
        at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (model_id, from_peer, to_peer) DO UPDATE SET kind = excluded.kind,
         bytes_sent = excluded.bytes_sent, bytes_received = excluded.bytes_received,
         bytes_per_second = excluded.bytes_per_second, rtt_ms = coalesce(excluded.rtt_ms, rtt_ms), at = excluded.at`,
    );
    const traffic = this.db.prepare(
      `INSERT INTO boundary_traffic (model_id, boundary, bytes, since, at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (model_id, boundary) DO UPDATE SET bytes = bytes + excluded.bytes, at = excluded.at`,
    );
    this.store.transaction(() => {
      for (const l of links) {
        const stage = stageOf.get(l.peerId);
        if (stage === undefined) continue;
        const kind: LinkKind = stage === mine.stage ? 'sync' : 'pipeline';
        const old = prior.get(mine.modelId, reporter, l.peerId) as Row | undefined;
        let rate = old ? Number(old.bytes_per_second ?? 0) : 0;
        let delta = 0;
        if (old) {
          const before = Number(old.bytes_sent);
          delta = l.bytesSent >= before ? l.bytesSent - before : l.bytesSent;
          const dt = (at - Number(old.at)) / 1000;
          if (dt > 0) rate = delta / dt;
        }
        upsert.run(mine.modelId, reporter, l.peerId, kind, l.bytesSent, l.bytesReceived, rate, l.rttMs, at);
        // Adjacent stages: this link crosses boundary min(stage, stage'). The first report only sets the baseline.
        if (Math.abs(stage - mine.stage) === 1)
          traffic.run(mine.modelId, Math.min(stage, mine.stage), old ? delta : 0, at, at);
      }
    });
  }

  /** The model's links whose two ends both hold a stage of it now. */
  linksOf(modelId: string): LinkView[] {
    const holders = new Set(this.store.listAssignments(modelId).map((a) => a.peerId));
    const rows = this.db
      .prepare('SELECT * FROM links WHERE model_id = ? ORDER BY from_peer, to_peer')
      .all(modelId) as Row[];
    return rows
      .filter((r) => holders.has(String(r.from_peer)) && holders.has(String(r.to_peer)))
      .map((r) => ({
        from: String(r.from_peer),
        to: String(r.to_peer),
        kind: String(r.kind) as LinkKind,
        bytesPerSecond: Number(r.bytes_per_second ?? 0),
        rttMs: r.rtt_ms === null ? null : Number(r.rtt_ms),
        at: Number(r.at),
      }));
  }

  /**
   * Each boundary's codec and its measured bytes per token (bytes since the first report ÷ tokens of steps finished
   * since).
   */
  boundaries(modelId: string, stages: number, dModel: number, codec: string): BoundaryView[] {
    const rows = new Map(
      (this.db.prepare('SELECT * FROM boundary_traffic WHERE model_id = ?').all(modelId) as Row[]).map((r) => [
        Number(r.boundary),
        r,
      ]),
    );
    const tokens = this.db.prepare(
      "SELECT SUM(tokens) AS t FROM steps WHERE model_id = ? AND status = 'done' AND finished_at > ? AND " +
        'finished_at <= ?',
    );
    return Array.from({ length: Math.max(0, stages - 1) }, (_, after) => {
      const r = rows.get(after);
      let bytesPerToken: number | null = null;
      if (r && Number(r.bytes) > 0) {
        const t = Number((tokens.get(modelId, Number(r.since), Number(r.at)) as Row).t ?? 0);
        if (t > 0) bytesPerToken = Number(r.bytes) / t;
      }
      return { after, codec, bytesPerToken, rawBytesPerToken: dModel * 4 * 2 };
    });
  }
}
