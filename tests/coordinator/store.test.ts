import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, Store } from '../../src/coordinator/store.ts';
import { tempDir, tinyModel } from './fixtures.ts';

describe('coordinator store (node:sqlite)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let path: string;
  beforeEach(() => {
    tmp = tempDir();
    path = join(tmp.dir, 'coord.db');
  });
  afterEach(() => tmp.cleanup());

  it('creates the schema once, in WAL mode, and records its version', () => {
    const s = Store.open(path);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    s.close();
    const raw = new DatabaseSync(path);
    expect((raw.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode).toBe('wal');
    const tables = (
      raw.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>
    ).map((r) => r.name);
    expect(tables).toEqual(
      expect.arrayContaining(['assignments', 'events', 'metrics', 'models', 'peers', 'schema_version', 'steps']),
    );
    raw.close();
    // Reopening applies nothing twice (a second CREATE TABLE would throw).
    const again = Store.open(path);
    expect(again.schemaVersion()).toBe(SCHEMA_VERSION);
    again.close();
  });

  it('refuses a database written by a newer coordinator', () => {
    Store.open(path).close();
    const raw = new DatabaseSync(path);
    raw.exec(`UPDATE schema_version SET version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => Store.open(path)).toThrow(expect.objectContaining({ name: 'HttpError', status: 500, code: 'store' }));
  });

  it('models: insert, read back with their JSON, duplicate ids refused', () => {
    const s = Store.open(path);
    const m = tinyModel('alpha', [2, 2]);
    expect(s.insertModel(m)).toBe(true);
    expect(s.insertModel({ ...m, name: 'other' })).toBe(false);
    expect(s.getModel('alpha')).toEqual(m);
    expect(s.getModel('nope')).toBeUndefined();
    s.insertModel(tinyModel('beta', [4], 2000));
    expect(s.listModels().map((x) => x.id)).toEqual(['alpha', 'beta']);
    s.close();
  });

  it('peers: join, heartbeat, gone (assignments dropped), rejoin keeps joined_at', () => {
    const s = Store.open(path);
    s.insertModel(tinyModel('m'));
    s.upsertPeer({ peerId: 'p1', kind: 'node', tokensPerSecond: 100, preferModel: null, at: 10 });
    s.upsertPeer({ peerId: 'p2', kind: 'browser', tokensPerSecond: 50, preferModel: 'm', at: 11 });
    s.touchPeer('p1', 20);
    s.touchPeer('p2', 21, 60);
    expect(s.getPeer('p1')).toMatchObject({ lastSeen: 20, tokensPerSecond: 100, status: 'alive', joinedAt: 10 });
    expect(s.getPeer('p2')).toMatchObject({ lastSeen: 21, tokensPerSecond: 60, kind: 'browser', preferModel: 'm' });
    s.replaceAssignments(
      [
        { modelId: 'm', stage: 0, replica: 0, peerId: 'p1' },
        { modelId: 'm', stage: 1, replica: 0, peerId: 'p2' },
      ],
      30,
    );
    s.markPeerGone('p1');
    expect(s.getPeer('p1')!.status).toBe('gone');
    expect(s.assignmentsOf('p1')).toEqual([]);
    expect(s.listPeers('alive').map((p) => p.peerId)).toEqual(['p2']);
    s.upsertPeer({ peerId: 'p1', kind: 'node', tokensPerSecond: 120, preferModel: null, at: 40 });
    expect(s.getPeer('p1')).toMatchObject({ status: 'alive', joinedAt: 10, lastSeen: 40, tokensPerSecond: 120 });
    s.close();
  });

  it('assignments: replaced atomically, unchanged rows keep `since`, one stage per peer per model enforced', () => {
    const s = Store.open(path);
    s.insertModel(tinyModel('m'));
    for (const p of ['a', 'b', 'c'])
      s.upsertPeer({ peerId: p, kind: 'node', tokensPerSecond: 1, preferModel: null, at: 0 });
    s.replaceAssignments(
      [
        { modelId: 'm', stage: 0, replica: 0, peerId: 'a' },
        { modelId: 'm', stage: 1, replica: 0, peerId: 'b' },
      ],
      100,
    );
    s.replaceAssignments(
      [
        { modelId: 'm', stage: 0, replica: 0, peerId: 'a' },
        { modelId: 'm', stage: 1, replica: 0, peerId: 'c' },
      ],
      200,
    );
    expect(s.listAssignments('m')).toEqual([
      { modelId: 'm', stage: 0, replica: 0, peerId: 'a', since: 100 },
      { modelId: 'm', stage: 1, replica: 0, peerId: 'c', since: 200 },
    ]);
    // The same peer on two stages of one model violates UNIQUE (model_id, peer_id): nothing changes.
    const twice = [
      { modelId: 'm', stage: 0, replica: 0, peerId: 'a' },
      { modelId: 'm', stage: 2, replica: 0, peerId: 'a' },
    ];
    expect(() => s.replaceAssignments(twice, 300)).toThrow();
    expect(s.listAssignments('m').map((a) => a.peerId)).toEqual(['a', 'c']);
    s.close();
  });

  it('steps and metrics: upserted steps, metrics once per (step, kind), cursors', () => {
    const s = Store.open(path);
    s.insertModel(tinyModel('m'));
    s.recordStep({ modelId: 'm', step: 1, status: 'running', at: 5 });
    const done = s.recordStep({ modelId: 'm', step: 1, status: 'done', loss: 3.5, tokens: 64, at: 9 });
    expect(done).toEqual({ modelId: 'm', step: 1, status: 'done', loss: 3.5, tokens: 64, startedAt: 5, finishedAt: 9 });
    s.recordStep({ modelId: 'm', step: 2, status: 'failed', at: 12 });
    expect(s.countSteps('m')).toEqual({ running: 0, done: 1, failed: 1 });
    expect(s.listSteps('m', 1).map((x) => x.step)).toEqual([2]);

    const first = s.addMetric({ modelId: 'm', step: 1, kind: 'train', value: 3.5, at: 9 });
    expect(first.duplicate).toBe(false);
    const replay = s.addMetric({ modelId: 'm', step: 1, kind: 'train', value: 99, at: 10 });
    expect(replay).toEqual({ metric: first.metric, duplicate: true });
    const val = s.addMetric({ modelId: 'm', step: 1, kind: 'val', value: 3.7, at: 11 }).metric;
    expect(s.listMetrics('m').map((x) => [x.kind, x.value])).toEqual([
      ['train', 3.5],
      ['val', 3.7],
    ]);
    expect(s.listMetrics('m', first.metric.id)).toEqual([val]);
    s.close();
  });

  it('events: JSON details, increasing ids as a cursor', () => {
    const s = Store.open(path);
    const e1 = s.logEvent('join', { peerId: 'p', nested: { a: [1, 2] } }, 1);
    const e2 = s.logEvent('gone', { peerId: 'p' }, 2);
    expect(e2.id).toBeGreaterThan(e1.id);
    expect(s.listEvents()).toEqual([e1, e2]);
    expect(s.listEvents(e1.id)).toEqual([e2]);
    s.close();
  });

  it('a failed transaction leaves nothing behind', () => {
    const s = Store.open(path);
    expect(() =>
      s.transaction(() => {
        s.insertModel(tinyModel('m'));
        s.logEvent('model', {}, 1);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(s.listModels()).toEqual([]);
    expect(s.listEvents()).toEqual([]);
    s.close();
  });

  it('a restart (reopening the file) loses nothing', () => {
    const s = Store.open(path);
    s.insertModel(tinyModel('m', [3, 1]));
    s.upsertPeer({ peerId: 'p1', kind: 'node', tokensPerSecond: 10, preferModel: null, at: 1 });
    s.upsertPeer({ peerId: 'p2', kind: 'browser', tokensPerSecond: 20, preferModel: 'm', at: 2 });
    s.markPeerGone('p2');
    s.replaceAssignments([{ modelId: 'm', stage: 1, replica: 0, peerId: 'p1' }], 3);
    s.recordStep({ modelId: 'm', step: 0, status: 'done', loss: 4, tokens: 16, at: 4 });
    s.addMetric({ modelId: 'm', step: 0, kind: 'train', value: 4, at: 4 });
    s.logEvent('start', { x: 1 }, 5);
    const snapshot = (st: Store) => ({
      models: st.listModels(),
      peers: st.listPeers(),
      assignments: st.listAssignments(),
      steps: st.listSteps('m'),
      metrics: st.listMetrics('m'),
      events: st.listEvents(),
    });
    const before = snapshot(s);
    s.close();
    const s2 = Store.open(path);
    expect(snapshot(s2)).toEqual(before);
    expect(before.peers).toHaveLength(2);
    expect(before.assignments).toHaveLength(1);
    expect(before.metrics).toHaveLength(1);
    s2.close();
  });
});
