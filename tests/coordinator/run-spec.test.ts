import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { SCHEMA_VERSION, Store } from '../../src/coordinator/store.ts';
import { presetSpec } from '../../src/train/run-spec.ts';
import { memoryLog, tempDir, tinyConfig } from './fixtures.ts';

describe('models as RunSpecs', () => {
  const tmp = tempDir();
  let coord: Coordinator;
  const post = async (path: string, body: unknown) => {
    const res = await fetch(coord.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  };

  beforeAll(async () => {
    coord = await Coordinator.start({
      dbPath: join(tmp.dir, 'c.db'),
      heartbeatMs: 200,
      log: memoryLog().log,
      relay: async () => ({ multiaddrs: [], stop: () => {} }),
    });
  });
  afterAll(async () => {
    await coord.stop();
    tmp.cleanup();
  });

  it('registers a whole spec; the answer, the flat fields and the assignment all come from it', async () => {
    const spec = presetSpec(true);
    spec.codec = { name: 'subspace', k: 8, tail: 1 };
    spec.optim.lr = 2e-3;
    const r = await post('/api/models', { id: 'spec-model', name: 'From a spec', spec });
    expect(r.status).toBe(201);
    expect(r.json.model.spec).toEqual(spec);
    expect(r.json.model).toMatchObject({ codec: 'subspace', config: spec.model, layout: spec.layout, batch: 4 });
    const joined = await post('/api/peers/join', { peerId: 'p1', kind: 'node', tokensPerSecond: 100 });
    expect(joined.json.assignment.spec).toEqual(spec);
    // The spec is the assignment's only copy of the model and its training.
    for (const flat of ['config', 'codec', 'microBatches', 'batch'])
      expect(joined.json.assignment).not.toHaveProperty(flat);
  });

  it('a flat registration gets the software preset optimiser and the config seed (else 1)', async () => {
    const flat = { name: 'Flat', config: tinyConfig, layout: [2, 2], codec: 'int8', microBatches: 2, batch: 3 };
    const r = await post('/api/models', { ...flat, pricePer1kTokens: 0.5 });
    expect(r.status).toBe(201);
    expect(r.json.model.spec).toEqual({
      model: tinyConfig,
      layout: [2, 2],
      codec: { name: 'int8', tail: 0 },
      microBatches: 2,
      batch: 3,
      optim: presetSpec(true).optim,
      data: { corpus: 'brown' },
      seed: 1,
      pricePer1kTokens: 0.5,
      snapshotEvery: presetSpec(true).snapshotEvery,
    });
  });

  it('refuses a bad spec naming the field, and a spec mixed with flat fields', async () => {
    const spec = presetSpec(true);
    const bad = await post('/api/models', { name: 'x', spec: { ...spec, optim: { ...spec.optim, beta2: 1 } } });
    expect([bad.status, bad.json.error]).toEqual([400, expect.stringMatching(/spec\.optim\.beta2/)]);
    const mixed = await post('/api/models', { name: 'x', spec, batch: 2 });
    expect([mixed.status, mixed.json.error]).toEqual([400, expect.stringMatching(/unknown field batch/)]);
  });
});

describe('migration 6', () => {
  it('turns a model stored with flat columns into its RunSpec', () => {
    const tmp = tempDir();
    const path = join(tmp.dir, 'old.db');
    Store.open(path).close();
    // Back to schema 5: the flat columns, no spec, one model row as the first coordinator stored it.
    const raw = new DatabaseSync(path);
    raw.exec(`ALTER TABLE models DROP COLUMN spec;
      ALTER TABLE models ADD COLUMN config TEXT; ALTER TABLE models ADD COLUMN layout TEXT;
      ALTER TABLE models ADD COLUMN codec TEXT; ALTER TABLE models ADD COLUMN micro_batches INTEGER;
      ALTER TABLE models ADD COLUMN batch INTEGER; ALTER TABLE models ADD COLUMN price_per_1k_tokens REAL;
      ALTER TABLE epochs DROP COLUMN post_pending_at; DROP INDEX usage_batch;
      ALTER TABLE usage DROP COLUMN charge_batch; ALTER TABLE steps DROP COLUMN replicas;
      UPDATE schema_version SET version = 5;`);
    raw
      .prepare('INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run('old', 'Old model', 7, JSON.stringify({ ...tinyConfig, seed: 9 }), '[3,1]', 'int8', 4, 2, 0.25);
    raw.close();
    const s = Store.open(path);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(s.getModel('old')).toEqual({
      id: 'old',
      name: 'Old model',
      createdAt: 7,
      spec: {
        model: { ...tinyConfig, seed: 9 },
        layout: [3, 1],
        codec: { name: 'int8', tail: 0 },
        microBatches: 4,
        batch: 2,
        optim: presetSpec(true).optim,
        data: { corpus: 'brown' },
        seed: 9,
        pricePer1kTokens: 0.25,
        snapshotEvery: presetSpec(true).snapshotEvery,
      },
    });
    s.close();
    tmp.cleanup();
  });
});
