/**
 * Graceful leaves with a hand-off (POST /api/peers/leave with `handoff: true`). The departing peer leaves the
 * layout at once (its stage goes to another replica or a waiting peer), but for up to HANDOFF_MS it stays alive,
 * keeps heartbeating, and every assignment of its model lists it under `departing`, so the new pipeline's
 * workers can fetch the stage from it during their reconfiguration. It ends with the peer's final leave (without
 * handoff), its silence (the sweep declares it gone), or the deadline (the coordinator then makes it leave).
 *
 * Rows live in SQLite so a coordinator restart inside the window neither forgets the hand-off nor places the
 * departing peer again. The table is created here with IF NOT EXISTS rather than as a numbered migration: its
 * rows are worth at most a minute, so any schema version can carry it and an older coordinator just ignores it.
 */
import type { Store } from './store.ts';

/** How long a departing peer stays listed for the hand-off of its stage. */
export const HANDOFF_MS = 60_000;

export interface Departure {
  peerId: string;
  modelId: string;
  stage: number;
  /** When the peer asked to leave. */
  since: number;
  /** Deadline of the hand-off: the peer is listed while now < until. */
  until: number;
}

type Row = Record<string, unknown>;

const toDeparture = (r: Row): Departure => ({
  peerId: String(r.peer_id),
  modelId: String(r.model_id),
  stage: Number(r.stage),
  since: Number(r.since),
  until: Number(r.until),
});

export class Departures {
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
    this.db.exec(
      `CREATE TABLE IF NOT EXISTS departures (
         peer_id TEXT PRIMARY KEY, model_id TEXT NOT NULL, stage INTEGER NOT NULL,
         since INTEGER NOT NULL, until INTEGER NOT NULL)`,
    );
  }

  private get db() {
    return this.store.connection;
  }

  /** Records a departure; a second one of the same peer keeps the first (its deadline does not move). */
  add(d: Departure): Departure {
    this.db
      .prepare('INSERT OR IGNORE INTO departures (peer_id, model_id, stage, since, until) VALUES (?, ?, ?, ?, ?)')
      .run(d.peerId, d.modelId, d.stage, d.since, d.until);
    return this.get(d.peerId)!;
  }

  get(peerId: string): Departure | undefined {
    const r = this.db.prepare('SELECT * FROM departures WHERE peer_id = ?').get(peerId) as Row | undefined;
    return r ? toDeparture(r) : undefined;
  }

  remove(peerId: string): boolean {
    return Number(this.db.prepare('DELETE FROM departures WHERE peer_id = ?').run(peerId).changes) > 0;
  }

  /** Every recorded departure, expired or not. */
  all(): Departure[] {
    return (this.db.prepare('SELECT * FROM departures ORDER BY since, peer_id').all() as Row[]).map(toDeparture);
  }

  /**
   * Peers no placement may take: every recorded departure of a peer still alive, past its deadline too (until
   * the coordinator finalises its leave, it must not be handed a stage again).
   */
  excluded(): Set<string> {
    const rows = this.db
      .prepare("SELECT d.peer_id FROM departures d JOIN peers p ON p.peer_id = d.peer_id WHERE p.status = 'alive'")
      .all() as Row[];
    return new Set(rows.map((r) => String(r.peer_id)));
  }

  /** The departing holders an assignment of `modelId` lists at `at`: alive, deadline not passed. */
  ofModel(modelId: string, at: number): Array<{ peerId: string; stage: number }> {
    const rows = this.db
      .prepare(
        `SELECT d.peer_id, d.stage FROM departures d JOIN peers p ON p.peer_id = d.peer_id
         WHERE d.model_id = ? AND d.until > ? AND p.status = 'alive' ORDER BY d.stage, d.peer_id`,
      )
      .all(modelId, at) as Row[];
    return rows.map((r) => ({ peerId: String(r.peer_id), stage: Number(r.stage) }));
  }

  /** Departures that are over at `at`: past their deadline, or of a peer already gone (silent, or left). */
  over(at: number): Array<Departure & { alive: boolean }> {
    const rows = this.db
      .prepare(
        `SELECT d.*, p.status FROM departures d LEFT JOIN peers p ON p.peer_id = d.peer_id
         WHERE d.until <= ? OR p.status IS NOT 'alive'`,
      )
      .all(at) as Row[];
    return rows.map((r) => ({ ...toDeparture(r), alive: r.status === 'alive' }));
  }
}
