/**
 * A coordinator whose disk fills up: SQLite's max_page_count caps the database at its current size, so writes
 * fail with SQLITE_FULL as on a full disk. Writes are answered 507 with a message that says what is wrong and
 * what to do, the failure is logged, the process keeps serving reads, a reporter keeps its receipts, and once
 * space returns the same writes succeed without a restart.
 */
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { storeFailure } from '../../src/coordinator/errors.ts';
import { Store } from '../../src/coordinator/store.ts';
import { receiptFor } from '../../src/ledger/flops.ts';
import { signReceipt } from '../../src/ledger/receipt.ts';
import { ReceiptReporter } from '../../src/ledger/reporter.ts';
import { stageSpecs } from '../../src/train/run-derived.ts';
import type { WorkContext } from '../../src/train/work.ts';
import { memoryLog, tempDir, tinyModel } from './fixtures.ts';

describe('coordinator on a full disk', () => {
  const tmp = tempDir();
  let coord: Coordinator | undefined;
  afterAll(async () => {
    await coord?.stop();
    tmp.cleanup();
  });

  it('answers 507 with a clear message, keeps running, and recovers when space returns', async () => {
    const logs = memoryLog();
    coord = await Coordinator.start({ dbPath: join(tmp.dir, 'c.db'), heartbeatMs: 60_000, log: logs.log });
    const c = coord;
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${c.url}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as any };
    };
    const model = tinyModel('full-disk', [2, 2]);
    expect((await call('POST', '/api/models', { id: model.id, name: model.name, spec: model.spec })).status).toBe(201);
    const key = await generateKeyPair('Ed25519');
    const peerId = peerIdFromPrivateKey(key).toString();
    const joined = await call('POST', '/api/peers/join', { peerId, kind: 'node', tokensPerSecond: 100 });
    expect(joined.status).toBe(200);
    for (let step = 0; step < 3; step++)
      expect((await call('POST', `/api/models/${model.id}/metrics`, { step, loss: 3 })).status).toBe(201);

    // The disk is full: not one more page.
    const db = c.store.connection;
    const pages = Number((db.prepare('PRAGMA page_count').get() as { page_count: number }).page_count);
    db.exec(`PRAGMA max_page_count = ${pages}`);

    const lines: string[] = [];
    const reporter = new ReceiptReporter({ key, peerId, coordinatorUrl: c.url, log: (l) => lines.push(l) });
    const context: WorkContext = {
      model: model.id,
      round: 1,
      spec: stageSpecs(model.spec)[joined.json.assignment.stage],
      replica: 0,
      replicas: 1,
      cfg: model.spec.model,
      batch: model.spec.batch,
      seq: model.spec.model.context,
    };
    const hash = (n: number) => `0x${n.toString(16).padStart(64, '0')}`;
    for (let i = 0; i < 200; i++)
      reporter.add(
        { kind: 'train', step: i % 3, micro: i, inputHash: hash(2 * i), outputHash: hash(2 * i + 1) },
        context,
      );
    await reporter.flush();
    expect(reporter.stats).toMatchObject({ accepted: 0, rejected: 0 });
    expect(reporter.unacknowledged).toBe(200);
    expect(lines.some((l) => /answered 507 \(the coordinator's disk is full/.test(l))).toBe(true);

    // The answer itself, for any client: a status to retry on, a stable code, what is wrong and what to do.
    const unit = (i: number) => ({
      kind: 'train' as const,
      step: 0,
      micro: 1000 + i,
      inputHash: hash(i),
      outputHash: hash(i),
    });
    const signed = await Promise.all(
      [0, 1, 2].map((i) => signReceipt(key, receiptFor(unit(i), { ...context, peerId }))),
    );
    const direct = await call('POST', `/api/models/${model.id}/receipts`, { receipts: signed });
    expect(direct.status).toBe(507);
    expect(direct.json.code).toBe('disk-full');
    expect(direct.json.error).toMatch(/^the coordinator's disk is full .*free space .* retry/);
    expect(logs.lines.some((l) => l.level === 'error' && /→ 507: the coordinator's disk is full/.test(l.message))).toBe(
      true,
    );
    // Still serving reads. A batch is stored receipt by receipt: those that fitted before the disk filled are
    // kept, and the retry below is answered "duplicate" for them.
    expect((await call('GET', '/api/models')).status).toBe(200);
    const count = () => Number((db.prepare('SELECT COUNT(*) AS n FROM receipts').get() as { n: number }).n);
    const storedWhileFull = count();
    expect(storedWhileFull).toBeLessThan(200);

    // Space returns: the same writes go through, no restart.
    db.exec('PRAGMA max_page_count = 1073741823');
    expect((await call('POST', `/api/models/${model.id}/receipts`, { receipts: signed })).json.accepted).toBe(3);
    await reporter.flush();
    expect(reporter.stats).toMatchObject({ accepted: 200 - storedWhileFull, rejected: 0, duplicates: storedWhileFull });
    expect(reporter.unacknowledged).toBe(0);
    expect(count()).toBe(203);
  });

  it('a transaction that fills the disk fails with SQLITE_FULL (rolled back by SQLite), not a ROLLBACK error', () => {
    const store = Store.open(join(tmp.dir, 'tx.db'));
    try {
      const db = store.connection;
      db.exec('CREATE TABLE filler (x TEXT)');
      const pages = Number((db.prepare('PRAGMA page_count').get() as { page_count: number }).page_count);
      db.exec(`PRAGMA max_page_count = ${pages + 2}`);
      let thrown: unknown;
      try {
        store.transaction(() => {
          for (let i = 0; i < 100; i++) db.prepare('INSERT INTO filler VALUES (?)').run('x'.repeat(1000));
        });
      } catch (e) {
        thrown = e;
      }
      expect((thrown as { errcode?: number }).errcode).toBe(13);
      expect(storeFailure(thrown)?.status).toBe(507);
      expect(Number((db.prepare('SELECT COUNT(*) AS n FROM filler').get() as { n: number }).n)).toBe(0);
      // Usable again once space returns.
      db.exec('PRAGMA max_page_count = 1073741823');
      store.transaction(() => db.prepare('INSERT INTO filler VALUES (?)').run('ok'));
    } finally {
      store.close();
    }
  });
});
