/**
 * Teams, as BOINC volunteers know them: anyone creates one by name; a peer joins by proving it holds its key
 * (an Ed25519 signature by the libp2p key inside its peer id over `tessera-team-join:<team>:<peer>:<nonce>`),
 * so nobody can move someone else's peer. A peer is in at most one team (joining another moves it) and each
 * (peer, nonce) is accepted once, so a captured join cannot be replayed to move the peer back later.
 * Schema: migration 4 in store.ts; the SQL of teams lives here.
 */
import { randomBytes } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import { HttpError } from './errors.ts';
import type { Store } from './store.ts';
import type { Logger } from './types.ts';
import { MODEL_ID, object, onlyKeys, PEER_ID, string } from './validate.ts';

type Row = Record<string, unknown>;

export interface TeamRef {
  id: string;
  name: string;
}

/** The bytes a peer signs to join a team (UTF-8). */
export function teamJoinMessage(teamId: string, peerId: string, nonce: string): string {
  return `tessera-team-join:${teamId}:${peerId}:${nonce}`;
}

const NONCE = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const MAX_NAME = 48;

/** Names compare without case and runs of spaces, so "Team  Blue" and "team blue" are one team. */
const nameKey = (name: string) => name.toLowerCase().replace(/\s+/g, ' ');

export class Teams {
  private readonly store: Store;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(opts: { store: Store; now: () => number; log: Logger }) {
    this.store = opts.store;
    this.now = opts.now;
    this.log = opts.log;
  }

  private get db() {
    return this.store.connection;
  }

  /** POST /api/teams `{ name }` → the new team; a name taken (ignoring case) is 409. */
  create(body: unknown): { id: string; name: string; createdAt: number } {
    const o = object(body, 'team');
    onlyKeys(o, 'team', ['name']);
    const name = string(o.name, 'name', undefined, 200).trim().replace(/\s+/g, ' ');
    if (name.length === 0 || name.length > MAX_NAME)
      throw new HttpError(
        'badRequest',
        `name must have 1 to ${MAX_NAME} characters besides spaces, got ${name.length}`,
      );
    if (/\p{Cc}/u.test(name)) throw new HttpError('badRequest', 'name must not contain control characters');
    const base =
      name
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, '-')
        .replace(/^-+|-+$/g, '')
        .slice(0, 40) || 'team';
    const id = `${base}-${randomBytes(3).toString('hex')}`;
    const at = this.now();
    this.store.transaction(() => {
      const taken = this.db.prepare('SELECT id FROM teams WHERE name_key = ?').get(nameKey(name)) as Row | undefined;
      if (taken)
        throw new HttpError(
          'conflict',
          `a team named ${JSON.stringify(name)} exists already (${taken.id}): join it instead`,
        );
      this.db
        .prepare('INSERT INTO teams (id, name, name_key, created_at) VALUES (?, ?, ?, ?)')
        .run(id, name, nameKey(name), at);
      this.store.logEvent('team', { teamId: id, name }, at);
    });
    this.log('info', `team ${id} (${name}) created`);
    return { id, name, createdAt: at };
  }

  list(): { teams: Array<{ id: string; name: string; members: number; createdAt: number }> } {
    const rows = this.db
      .prepare(
        'SELECT t.id, t.name, t.created_at, COUNT(m.peer_id) AS members FROM teams t LEFT JOIN team_members m ' +
          'ON m.team_id = t.id GROUP BY t.id ORDER BY t.created_at, t.rowid',
      )
      .all() as Row[];
    return {
      teams: rows.map((r) => ({
        id: String(r.id),
        name: String(r.name),
        members: Number(r.members),
        createdAt: Number(r.created_at),
      })),
    };
  }

  get(teamId: string): TeamRef | undefined {
    const r = this.db.prepare('SELECT id, name FROM teams WHERE id = ?').get(teamId) as Row | undefined;
    return r && { id: String(r.id), name: String(r.name) };
  }

  teamOf(peerId: string): TeamRef | null {
    const r = this.db
      .prepare('SELECT t.id, t.name FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.peer_id = ?')
      .get(peerId) as Row | undefined;
    return r ? { id: String(r.id), name: String(r.name) } : null;
  }

  /** Every member's team (one query for the leaderboards and the topology). */
  memberships(): Map<string, TeamRef> {
    const rows = this.db
      .prepare('SELECT m.peer_id, t.id, t.name FROM team_members m JOIN teams t ON t.id = m.team_id')
      .all() as Row[];
    return new Map(rows.map((r) => [String(r.peer_id), { id: String(r.id), name: String(r.name) }]));
  }

  all(): Array<TeamRef & { createdAt: number }> {
    return (this.db.prepare('SELECT id, name, created_at FROM teams ORDER BY created_at, rowid').all() as Row[]).map(
      (r) => ({ id: String(r.id), name: String(r.name), createdAt: Number(r.created_at) }),
    );
  }

  /**
   * POST /api/teams/:id/members `{ peerId, nonce, signature }`: 404 unknown team, 400 malformed fields or a peer
   * id without an Ed25519 key, 401 a signature that is not the peer's, 409 a nonce this peer used before.
   */
  async join(teamIdRaw: string, body: unknown): Promise<{ teamId: string; peerId: string }> {
    const teamId = string(teamIdRaw, 'team id', MODEL_ID, 64);
    const team = this.get(teamId);
    if (!team) throw new HttpError('notFound', `unknown team ${JSON.stringify(teamId)}`);
    const o = object(body, 'team join');
    onlyKeys(o, 'team join', ['peerId', 'nonce', 'signature']);
    const peerId = string(o.peerId, 'peerId', PEER_ID, 128);
    const nonce = string(o.nonce, 'nonce', NONCE, 64);
    const signature = string(o.signature, 'signature', BASE64, 200);
    let key;
    try {
      key = peerIdFromString(peerId).publicKey;
    } catch (e) {
      throw new HttpError('badRequest', `peerId ${peerId} is not a libp2p peer id: ${(e as Error).message}`);
    }
    if (key?.type !== 'Ed25519')
      throw new HttpError('badRequest', `peerId ${peerId} does not embed an Ed25519 key to check the signature with`);
    const sig = Buffer.from(signature, 'base64');
    let ok = false;
    try {
      ok =
        sig.length === 64 && (await key.verify(new TextEncoder().encode(teamJoinMessage(teamId, peerId, nonce)), sig));
    } catch {
      ok = false;
    }
    if (!ok) {
      this.log('warn', `team join of ${peerId} to ${teamId} refused: the signature is not this peer's`);
      throw new HttpError(
        'unauthorized',
        `the signature is not ${peerId}'s over ${JSON.stringify(teamJoinMessage(teamId, peerId, nonce))}`,
      );
    }
    const at = this.now();
    const from = this.store.transaction(() => {
      const used = this.db.prepare('SELECT 1 FROM team_nonces WHERE peer_id = ? AND nonce = ?').get(peerId, nonce);
      if (used)
        throw new HttpError('conflict', `nonce ${nonce} was used by ${peerId} already (replay?): sign a fresh one`);
      this.db.prepare('INSERT INTO team_nonces (peer_id, nonce, at) VALUES (?, ?, ?)').run(peerId, nonce, at);
      const prior = this.teamOf(peerId);
      this.db
        .prepare(
          'INSERT INTO team_members (peer_id, team_id, joined_at) VALUES (?, ?, ?) ON CONFLICT (peer_id) DO ' +
            'UPDATE SET team_id = excluded.team_id, joined_at = excluded.joined_at',
        )
        .run(peerId, teamId, at);
      this.store.logEvent('team-join', { peerId, teamId, from: prior?.id ?? null }, at);
      return prior;
    });
    this.log('info', `peer ${peerId} joined team ${teamId}${from && from.id !== teamId ? ` (left ${from.id})` : ''}`);
    return { teamId, peerId };
  }
}
