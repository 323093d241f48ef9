import { DatabaseSync } from 'node:sqlite';
import { HttpError } from './errors.ts';
import { specFromFlat } from './registry.ts';
import type {
  AssignmentRecord,
  EventRecord,
  MetricKind,
  MetricRecord,
  ModelRecord,
  PeerKind,
  PeerRecord,
  PeerStatus,
  StepRecord,
  StepStatus,
  ThroughputPoint,
} from './types.ts';

/**
 * The coordinator's state in embedded SQLite (node:sqlite). All SQL of the swarm state lives in this file (the ledger's
 * in ledger-store.ts); callers see typed records. WAL mode with synchronous=NORMAL: a committed transaction survives a
 * crash of the process (an OS crash may lose the last few), so a restarted coordinator resumes where it stopped.
 */

/**
 * Schema migrations, applied in order; `schema_version` records how many ran. Append, never edit. A function
 * runs where SQL cannot say the change (rows rewritten by TypeScript).
 */
const MIGRATIONS: ReadonlyArray<string | ((db: DatabaseSync) => void)> = [
  `CREATE TABLE models (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     config TEXT NOT NULL,
     layout TEXT NOT NULL,
     codec TEXT NOT NULL,
     micro_batches INTEGER NOT NULL,
     batch INTEGER NOT NULL,
     price_per_1k_tokens REAL NOT NULL,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE peers (
     peer_id TEXT PRIMARY KEY,
     kind TEXT NOT NULL CHECK (kind IN ('node', 'browser')),
     tokens_per_second REAL NOT NULL,
     prefer_model TEXT,
     last_seen INTEGER NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('alive', 'gone')),
     joined_at INTEGER NOT NULL
   );
   CREATE TABLE assignments (
     model_id TEXT NOT NULL REFERENCES models(id),
     stage INTEGER NOT NULL,
     replica INTEGER NOT NULL,
     peer_id TEXT NOT NULL REFERENCES peers(peer_id),
     since INTEGER NOT NULL,
     PRIMARY KEY (model_id, stage, replica),
     UNIQUE (model_id, peer_id)
   );
   CREATE TABLE steps (
     model_id TEXT NOT NULL REFERENCES models(id),
     step INTEGER NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
     loss REAL,
     tokens INTEGER,
     started_at INTEGER NOT NULL,
     finished_at INTEGER,
     PRIMARY KEY (model_id, step)
   );
   CREATE TABLE metrics (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     model_id TEXT NOT NULL REFERENCES models(id),
     step INTEGER NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('train', 'val')),
     value REAL NOT NULL,
     at INTEGER NOT NULL,
     UNIQUE (model_id, step, kind)
   );
   CREATE TABLE events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     kind TEXT NOT NULL,
     detail TEXT NOT NULL
   );`,
  // 2: the contribution ledger (queries in ledger-store.ts).
  `CREATE TABLE assignment_held (
     model_id TEXT NOT NULL, stage INTEGER NOT NULL, replica INTEGER NOT NULL, peer_id TEXT NOT NULL,
       first_at INTEGER NOT NULL,
     PRIMARY KEY (model_id, stage, replica, peer_id)
   );
   INSERT INTO assignment_held SELECT model_id, stage, replica, peer_id, since FROM assignments;
   CREATE TABLE receipts (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     model_id TEXT NOT NULL REFERENCES models(id),
     epoch INTEGER,
     round INTEGER NOT NULL, stage INTEGER NOT NULL, replica INTEGER NOT NULL, replicas INTEGER NOT NULL,
     step INTEGER NOT NULL, micro INTEGER NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('train', 'audit')),
     flops INTEGER NOT NULL, input_hash TEXT NOT NULL, output_hash TEXT NOT NULL,
     peer_id TEXT NOT NULL, signature TEXT NOT NULL, at INTEGER NOT NULL,
     UNIQUE (model_id, round, stage, step, micro, kind, peer_id)
   );
   CREATE UNIQUE INDEX receipts_one_train ON receipts (model_id, round, stage, step, micro) WHERE kind = 'train';
   CREATE INDEX receipts_epoch ON receipts (model_id, epoch);
   CREATE TABLE epochs (
     model_id TEXT NOT NULL REFERENCES models(id),
     epoch INTEGER NOT NULL,
     closed_at INTEGER NOT NULL,
     through_step INTEGER NOT NULL,
     root TEXT,
     leaves TEXT NOT NULL,
     verdicts TEXT NOT NULL,
     audits TEXT NOT NULL,
     bindings TEXT NOT NULL,
     tx_hash TEXT, posted_at INTEGER, claimable_at INTEGER, chain_error TEXT,
     PRIMARY KEY (model_id, epoch)
   );
   CREATE TABLE credits (
     model_id TEXT NOT NULL, epoch INTEGER NOT NULL, peer_id TEXT NOT NULL, flops TEXT NOT NULL,
       caught INTEGER NOT NULL,
     PRIMARY KEY (model_id, epoch, peer_id)
   );
   CREATE TABLE bindings (
     peer_id TEXT PRIMARY KEY, wallet TEXT NOT NULL, nonce TEXT NOT NULL, expiry TEXT NOT NULL,
     wallet_signature TEXT NOT NULL, peer_signature TEXT NOT NULL, at INTEGER NOT NULL
   );
   CREATE INDEX bindings_wallet ON bindings (wallet);
   CREATE TABLE wallet_nonces (wallet TEXT PRIMARY KEY, used INTEGER NOT NULL);
   CREATE TABLE reputations (
     peer_id TEXT PRIMARY KEY, strikes INTEGER NOT NULL, banned INTEGER NOT NULL, reason TEXT, at INTEGER NOT NULL
   );`,
  // 3: paid inference (queries in payments.ts): metered usage until charged on chain, request nonces.
  `CREATE TABLE usage (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     request_id TEXT NOT NULL UNIQUE,
     payer TEXT NOT NULL,
     model_id TEXT NOT NULL REFERENCES models(id),
     prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
     cost_wei TEXT NOT NULL,
     at INTEGER NOT NULL,
     charge_tx TEXT, charged_at INTEGER
   );
   CREATE INDEX usage_uncharged ON usage (payer, model_id) WHERE charge_tx IS NULL;
   CREATE TABLE request_nonces (payer TEXT PRIMARY KEY, last TEXT NOT NULL);`,
  // 4: the Researcher and Volunteer views: teams (teams.ts), measured links and boundary traffic (links.ts).
  `CREATE TABLE teams (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL
   );
   CREATE TABLE team_members (
     peer_id TEXT PRIMARY KEY, team_id TEXT NOT NULL REFERENCES teams(id), joined_at INTEGER NOT NULL
   );
   CREATE INDEX team_members_team ON team_members (team_id);
   CREATE TABLE team_nonces (peer_id TEXT NOT NULL, nonce TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (peer_id,
     nonce));
   CREATE TABLE links (
     model_id TEXT NOT NULL REFERENCES models(id), from_peer TEXT NOT NULL, to_peer TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('pipeline', 'sync')),
     bytes_sent INTEGER NOT NULL, bytes_received INTEGER NOT NULL, bytes_per_second REAL, rtt_ms REAL,
       at INTEGER NOT NULL,
     PRIMARY KEY (model_id, from_peer, to_peer)
   );
   CREATE TABLE boundary_traffic (
     model_id TEXT NOT NULL REFERENCES models(id), boundary INTEGER NOT NULL, bytes INTEGER NOT NULL,
       since INTEGER NOT NULL, at INTEGER NOT NULL,
     PRIMARY KEY (model_id, boundary)
   );`,
  // 5: inference receipts (src/ledger/receipt.ts kinds infer, infer-audit) with their output sketch and session
  // weights step. SQLite cannot
  // widen a CHECK: the table is rebuilt with its rows, ids and indexes.
  `CREATE TABLE receipts_v5 (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     model_id TEXT NOT NULL REFERENCES models(id),
     epoch INTEGER,
     round INTEGER NOT NULL, stage INTEGER NOT NULL, replica INTEGER NOT NULL, replicas INTEGER NOT NULL,
     step INTEGER NOT NULL, micro INTEGER NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('train', 'audit', 'infer', 'infer-audit')),
     flops INTEGER NOT NULL, input_hash TEXT NOT NULL, output_hash TEXT NOT NULL,
     peer_id TEXT NOT NULL, signature TEXT NOT NULL, at INTEGER NOT NULL,
     sketch TEXT, session_step INTEGER,
     UNIQUE (model_id, round, stage, step, micro, kind, peer_id)
   );
   INSERT INTO receipts_v5 (id, model_id, epoch, round, stage, replica, replicas, step, micro, kind, flops,
     input_hash, output_hash, peer_id, signature, at)
     SELECT id, model_id, epoch, round, stage, replica, replicas, step, micro, kind, flops, input_hash, output_hash,
       peer_id, signature, at FROM receipts;
   DROP TABLE receipts;
   ALTER TABLE receipts_v5 RENAME TO receipts;
   CREATE UNIQUE INDEX receipts_one_train ON receipts (model_id, round, stage, step, micro) WHERE kind = 'train';
   CREATE UNIQUE INDEX receipts_one_infer ON receipts (model_id, stage, micro, kind) WHERE kind IN ('infer',
     'infer-audit');
   CREATE INDEX receipts_epoch ON receipts (model_id, epoch);`,
  // 6: a model is its RunSpec. Models stored before get the spec their flat columns describe (specFromFlat),
  // then the flat columns go: the spec is the one place they live.
  (db) => {
    db.exec('ALTER TABLE models ADD COLUMN spec TEXT');
    const set = db.prepare('UPDATE models SET spec = ? WHERE id = ?');
    for (const r of db.prepare('SELECT * FROM models').all() as Row[]) {
      const spec = specFromFlat({
        config: parseJson(r.config, `config of model ${r.id}`),
        layout: parseJson(r.layout, `layout of model ${r.id}`),
        codec: String(r.codec),
        microBatches: num(r.micro_batches),
        batch: num(r.batch),
        pricePer1kTokens: num(r.price_per_1k_tokens),
      });
      set.run(JSON.stringify(spec), String(r.id));
    }
    for (const c of ['config', 'layout', 'codec', 'micro_batches', 'batch', 'price_per_1k_tokens'])
      db.exec(`ALTER TABLE models DROP COLUMN ${c}`);
  },
  // Settlement and charges exactly once (settlement.ts, payments.ts): a root marked as being sent before its
  // transaction; uncharged usage grouped into a charge batch, the escrow's usage identifier, before it is sent.
  `ALTER TABLE epochs ADD COLUMN post_pending_at INTEGER;
   ALTER TABLE usage ADD COLUMN charge_batch TEXT;
   CREATE INDEX usage_batch ON usage (charge_batch) WHERE charge_batch IS NOT NULL;`,
  // Each stage's replica count when a step was first recorded done: what its receipts must claim, even when they
  // arrive late (a worker's durable outbox) after the stage gained replicas (ledger.ts).
  'ALTER TABLE steps ADD COLUMN replicas TEXT;',
];

export const SCHEMA_VERSION = MIGRATIONS.length;

type Row = Record<string, unknown>;

const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

// biome-ignore lint/suspicious/noExplicitAny: a stored JSON column; each caller reads it as its own row shape
function parseJson(v: unknown, what: string): any {
  try {
    return JSON.parse(String(v));
  } catch {
    throw new HttpError('store', `stored ${what} is not valid JSON`);
  }
}

const toModel = (r: Row): ModelRecord => ({
  id: String(r.id),
  name: String(r.name),
  spec: parseJson(r.spec, `spec of model ${r.id}`),
  createdAt: num(r.created_at),
});

const toPeer = (r: Row): PeerRecord => ({
  peerId: String(r.peer_id),
  kind: String(r.kind) as PeerKind,
  tokensPerSecond: num(r.tokens_per_second),
  preferModel: r.prefer_model === null ? null : String(r.prefer_model),
  lastSeen: num(r.last_seen),
  status: String(r.status) as PeerStatus,
  joinedAt: num(r.joined_at),
});

const toAssignment = (r: Row): AssignmentRecord => ({
  modelId: String(r.model_id),
  stage: num(r.stage),
  replica: num(r.replica),
  peerId: String(r.peer_id),
  since: num(r.since),
});

const toStep = (r: Row): StepRecord => ({
  modelId: String(r.model_id),
  step: num(r.step),
  status: String(r.status) as StepStatus,
  loss: numOrNull(r.loss),
  tokens: numOrNull(r.tokens),
  startedAt: num(r.started_at),
  finishedAt: numOrNull(r.finished_at),
});

const toMetric = (r: Row): MetricRecord => ({
  id: num(r.id),
  modelId: String(r.model_id),
  step: num(r.step),
  kind: String(r.kind) as MetricKind,
  value: num(r.value),
  at: num(r.at),
});

const toEvent = (r: Row): EventRecord => ({
  id: num(r.id),
  at: num(r.at),
  kind: String(r.kind),
  detail: parseJson(r.detail, `event ${r.id}`),
});

export interface JoinInput {
  peerId: string;
  kind: PeerKind;
  tokensPerSecond: number;
  preferModel: string | null;
  at: number;
}

export interface StepInput {
  modelId: string;
  step: number;
  status: StepStatus;
  loss?: number | null;
  tokens?: number | null;
  at: number;
}

export interface PlacementInput {
  modelId: string;
  stage: number;
  replica: number;
  peerId: string;
}

export class Store {
  readonly path: string;
  private readonly db: DatabaseSync;
  private depth = 0;

  private constructor(path: string, db: DatabaseSync) {
    this.path = path;
    this.db = db;
  }

  /** Opens (creating if needed) the database at `path` and brings its schema up to date. */
  static open(path: string): Store {
    const db = new DatabaseSync(path);
    try {
      db.exec(
        'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;',
      );
      const store = new Store(path, db);
      store.migrate();
      return store;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  /** The connection, for the ledger's queries (ledger-store.ts) in the same transactions. */
  get connection(): DatabaseSync {
    return this.db;
  }

  schemaVersion(): number {
    const row = this.db.prepare('SELECT version FROM schema_version').get() as Row | undefined;
    return row ? num(row.version) : 0;
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    if (!this.db.prepare('SELECT version FROM schema_version').get())
      this.db.prepare('INSERT INTO schema_version (version) VALUES (0)').run();
    const from = this.schemaVersion();
    if (from > SCHEMA_VERSION) {
      throw new HttpError(
        'store',
        `database ${this.path} has schema version ${from}, newer than this coordinator's ${SCHEMA_VERSION}: ` +
          `upgrade the coordinator`,
      );
    }
    for (let v = from; v < SCHEMA_VERSION; v++) {
      this.transaction(() => {
        const m = MIGRATIONS[v];
        if (typeof m === 'string') this.db.exec(m);
        else m(this.db);
        this.db.prepare('UPDATE schema_version SET version = ?').run(v + 1);
      });
    }
  }

  /** Runs `fn` in one transaction (nested calls join the outer one); rolls back if it throws. */
  transaction<T>(fn: () => T): T {
    if (this.depth > 0) return fn();
    this.db.exec('BEGIN IMMEDIATE');
    this.depth++;
    try {
      const out = fn();
      this.db.exec('COMMIT');
      return out;
    } catch (e) {
      // SQLite rolls back by itself on some errors (SQLITE_FULL): a second ROLLBACK would hide the real error.
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw e;
    } finally {
      this.depth--;
    }
  }

  // Models.

  /** Inserts a model; returns false (and changes nothing) when its id is taken. */
  insertModel(m: ModelRecord): boolean {
    const r = this.db
      .prepare('INSERT INTO models (id, name, spec, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING')
      .run(m.id, m.name, JSON.stringify(m.spec), m.createdAt);
    return Number(r.changes) === 1;
  }

  getModel(id: string): ModelRecord | undefined {
    const r = this.db.prepare('SELECT * FROM models WHERE id = ?').get(id) as Row | undefined;
    return r && toModel(r);
  }

  /** Models in registration order. */
  listModels(): ModelRecord[] {
    return (this.db.prepare('SELECT * FROM models ORDER BY created_at, id').all() as Row[]).map(toModel);
  }

  // Peers.

  /** A join: creates the peer or brings a known one back alive (its joined_at is kept). */
  upsertPeer(p: JoinInput): PeerRecord {
    this.db
      .prepare(
        `INSERT INTO peers (peer_id, kind, tokens_per_second, prefer_model, last_seen, status, joined_at)
         VALUES (?, ?, ?, ?, ?, 'alive', ?)
         ON CONFLICT (peer_id) DO UPDATE SET kind = excluded.kind, tokens_per_second = excluded.tokens_per_second,
           prefer_model = excluded.prefer_model, last_seen = excluded.last_seen, status = 'alive'`,
      )
      .run(p.peerId, p.kind, p.tokensPerSecond, p.preferModel, p.at, p.at);
    return this.getPeer(p.peerId)!;
  }

  getPeer(peerId: string): PeerRecord | undefined {
    const r = this.db.prepare('SELECT * FROM peers WHERE peer_id = ?').get(peerId) as Row | undefined;
    return r && toPeer(r);
  }

  listPeers(status?: PeerStatus): PeerRecord[] {
    const rows = status
      ? this.db.prepare('SELECT * FROM peers WHERE status = ? ORDER BY joined_at, peer_id').all(status)
      : this.db.prepare('SELECT * FROM peers ORDER BY joined_at, peer_id').all();
    return (rows as Row[]).map(toPeer);
  }

  /** A heartbeat: last_seen, and the throughput when the peer measured a new one. */
  touchPeer(peerId: string, at: number, tokensPerSecond?: number): void {
    if (tokensPerSecond === undefined)
      this.db.prepare('UPDATE peers SET last_seen = ? WHERE peer_id = ?').run(at, peerId);
    else
      this.db
        .prepare('UPDATE peers SET last_seen = ?, tokens_per_second = ? WHERE peer_id = ?')
        .run(at, tokensPerSecond, peerId);
  }

  /** After a restart: alive peers get a fresh grace period instead of being declared gone for our downtime. */
  touchAlivePeers(at: number): number {
    return Number(this.db.prepare("UPDATE peers SET last_seen = ? WHERE status = 'alive'").run(at).changes);
  }

  /** Marks the peer gone and drops its assignments. */
  markPeerGone(peerId: string): void {
    this.transaction(() => {
      this.db.prepare("UPDATE peers SET status = 'gone' WHERE peer_id = ?").run(peerId);
      this.db.prepare('DELETE FROM assignments WHERE peer_id = ?').run(peerId);
    });
  }

  // Assignments.

  listAssignments(modelId?: string): AssignmentRecord[] {
    const rows = modelId
      ? this.db.prepare('SELECT * FROM assignments WHERE model_id = ? ORDER BY stage, replica').all(modelId)
      : this.db.prepare('SELECT * FROM assignments ORDER BY model_id, stage, replica').all();
    return (rows as Row[]).map(toAssignment);
  }

  assignmentsOf(peerId: string): AssignmentRecord[] {
    return (this.db.prepare('SELECT * FROM assignments WHERE peer_id = ? ORDER BY model_id').all(peerId) as Row[]).map(
      toAssignment,
    );
  }

  /** Replaces all assignments by `next`; rows that stay the same keep their `since`. */
  replaceAssignments(next: readonly PlacementInput[], at: number): void {
    const key = (a: PlacementInput) => `${a.modelId}\u0000${a.stage}\u0000${a.replica}\u0000${a.peerId}`;
    this.transaction(() => {
      const old = new Map(this.listAssignments().map((a) => [key(a), a]));
      this.db.exec('DELETE FROM assignments');
      const insert = this.db.prepare(
        'INSERT INTO assignments (model_id, stage, replica, peer_id, since) VALUES (?, ?, ?, ?, ?)',
      );
      const held = this.db.prepare(
        'INSERT OR IGNORE INTO assignment_held (model_id, stage, replica, peer_id, first_at) VALUES (?, ?, ?, ?, ?)',
      );
      for (const a of next) {
        insert.run(a.modelId, a.stage, a.replica, a.peerId, old.get(key(a))?.since ?? at);
        held.run(a.modelId, a.stage, a.replica, a.peerId, at);
      }
      // Workers number a stage's replicas densely in replica order (src/net/worker/roster.ts: this numbering may
      // have gaps after a departure), and their receipts claim that number: it is held too.
      const stages = new Map<string, PlacementInput[]>();
      for (const a of next) {
        const k = `${a.modelId}\u0000${a.stage}`;
        stages.set(k, [...(stages.get(k) ?? []), a]);
      }
      for (const list of stages.values())
        [...list]
          .sort((x, y) => x.replica - y.replica)
          .forEach((a, dense) => held.run(a.modelId, a.stage, dense, a.peerId, at));
    });
  }

  // Steps.

  /** Creates or updates a step; started_at is set once, finished_at when it becomes done or failed. */
  recordStep(s: StepInput): StepRecord {
    const finished = s.status === 'running' ? null : s.at;
    this.db
      .prepare(
        `INSERT INTO steps (model_id, step, status, loss, tokens, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (model_id, step) DO UPDATE SET status = excluded.status, loss = coalesce(excluded.loss, loss),
           tokens = coalesce(excluded.tokens, tokens), finished_at = excluded.finished_at`,
      )
      .run(s.modelId, s.step, s.status, s.loss ?? null, s.tokens ?? null, s.at, finished);
    return this.getStep(s.modelId, s.step)!;
  }

  /** Keeps each stage's replica count for a step, the first time it is recorded done. */
  setStepReplicas(modelId: string, step: number, replicas: number[]): void {
    this.db
      .prepare('UPDATE steps SET replicas = ? WHERE model_id = ? AND step = ? AND replicas IS NULL')
      .run(JSON.stringify(replicas), modelId, step);
  }

  /** Each stage's replica count when the step was first recorded done (undefined: not recorded yet). */
  stepReplicas(modelId: string, step: number): number[] | undefined {
    const r = this.db.prepare('SELECT replicas FROM steps WHERE model_id = ? AND step = ?').get(modelId, step) as
      | Row
      | undefined;
    return typeof r?.replicas === 'string'
      ? (parseJson(r.replicas, `replicas of step ${step}`) as number[])
      : undefined;
  }

  getStep(modelId: string, step: number): StepRecord | undefined {
    const r = this.db.prepare('SELECT * FROM steps WHERE model_id = ? AND step = ?').get(modelId, step) as
      | Row
      | undefined;
    return r && toStep(r);
  }

  listSteps(modelId: string, afterStep = -1, limit = 1000): StepRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM steps WHERE model_id = ? AND step > ? ORDER BY step LIMIT ?')
      .all(modelId, afterStep, limit);
    return (rows as Row[]).map(toStep);
  }

  countSteps(modelId: string): Record<StepStatus, number> {
    const out: Record<StepStatus, number> = { running: 0, done: 0, failed: 0 };
    for (const r of this.db
      .prepare('SELECT status, count(*) AS n FROM steps WHERE model_id = ? GROUP BY status')
      .all(modelId) as Row[]) {
      out[String(r.status) as StepStatus] = num(r.n);
    }
    return out;
  }

  // Metrics.

  /** Records a metric once per (model, step, kind): a replayed report returns the stored one, unchanged. */
  addMetric(m: Omit<MetricRecord, 'id'>): { metric: MetricRecord; duplicate: boolean } {
    const r = this.db
      .prepare('INSERT INTO metrics (model_id, step, kind, value, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING')
      .run(m.modelId, m.step, m.kind, m.value, m.at);
    const row = this.db
      .prepare('SELECT * FROM metrics WHERE model_id = ? AND step = ? AND kind = ?')
      .get(m.modelId, m.step, m.kind) as Row;
    return { metric: toMetric(row), duplicate: Number(r.changes) === 0 };
  }

  /** Metrics of a model with id > sinceId, oldest first. */
  listMetrics(modelId: string, sinceId = 0, limit = 1000): MetricRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM metrics WHERE model_id = ? AND id > ? ORDER BY id LIMIT ?')
      .all(modelId, sinceId, limit);
    return (rows as Row[]).map(toMetric);
  }

  /**
   * Tokens/s of done steps: tokens over the step's duration, from its start when a 'running' report set one,
   * else from the previous done step's finish (workers report only finished steps; steps run back to back).
   * `afterStep` null: the latest `limit` points; else those of steps > afterStep. Oldest first.
   */
  throughput(modelId: string, afterStep: number | null, limit = 1000): ThroughputPoint[] {
    const timed = `SELECT step, tokens, started_at, finished_at, LAG(finished_at) OVER (ORDER BY step) AS prev
                   FROM steps WHERE model_id = ? AND status = 'done'`;
    const rows = (
      afterStep === null
        ? this.db
            .prepare(`SELECT * FROM (${timed}) ORDER BY step DESC LIMIT ?`)
            .all(modelId, limit + 1)
            .reverse()
        : this.db
            .prepare(`SELECT * FROM (${timed}) WHERE step > ? ORDER BY step LIMIT ?`)
            .all(modelId, afterStep, limit)
    ) as Row[];
    const out: ThroughputPoint[] = [];
    for (const r of rows) {
      const finished = num(r.finished_at);
      const from = num(r.started_at) < finished ? num(r.started_at) : numOrNull(r.prev);
      if (r.tokens === null || from === null || finished <= from) continue;
      out.push({ step: num(r.step), at: finished, tokensPerSecond: (num(r.tokens) * 1000) / (finished - from) });
    }
    return out.slice(-limit);
  }

  /** The newest `n` metrics of a model, oldest first. */
  latestMetrics(modelId: string, n: number): MetricRecord[] {
    return (
      this.db.prepare('SELECT * FROM metrics WHERE model_id = ? ORDER BY id DESC LIMIT ?').all(modelId, n) as Row[]
    )
      .map(toMetric)
      .reverse();
  }

  // Events.

  logEvent(kind: string, detail: Record<string, unknown>, at: number): EventRecord {
    const r = this.db
      .prepare('INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)')
      .run(at, kind, JSON.stringify(detail));
    return { id: Number(r.lastInsertRowid), at, kind, detail };
  }

  /** Events with id > sinceId, oldest first. */
  listEvents(sinceId = 0, limit = 1000): EventRecord[] {
    return (this.db.prepare('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?').all(sinceId, limit) as Row[]).map(
      toEvent,
    );
  }
}
