/**
 * The receipt reporter sizes its requests by bytes: a batch of signed receipts (~0.5 KB of JSON each) is split so
 * no request crosses the coordinator's body limit, each receipt leaves the queue only once the coordinator has
 * answered for it, and an unreachable coordinator keeps the rest for later without sending any receipt twice.
 */
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { packBodies, ReceiptReporter } from '../../src/ledger/reporter.ts';
import { type SignedReceipt, signReceipt } from '../../src/ledger/receipt.ts';
import type { WorkContext, WorkDone } from '../../src/train/work.ts';
import { MAX_BODY_BYTES } from '../../src/wire/index.ts';
import { memoryLog, tempDir, tinyModel } from '../coordinator/fixtures.ts';

const key = await generateKeyPair('Ed25519');
const peerId = peerIdFromPrivateKey(key).toString();
const model = tinyModel('reporter-test', [2, 2]);
const context: WorkContext = {
  model: model.id,
  round: 1,
  spec: { index: 0, count: 2, firstLayer: 0, endLayer: 2, hasEmbedding: true, hasHead: false },
  replica: 0,
  replicas: 1,
  cfg: model.spec.model,
  batch: 2,
  seq: 8,
};
const hash = (n: number) => `0x${n.toString(16).padStart(64, '0')}`;
const unit = (step: number, micro: number): WorkDone => ({
  kind: 'train',
  step,
  micro,
  inputHash: hash(step * 1000 + micro),
  outputHash: hash(step * 1000 + micro + 1),
});

/**
 * A stand-in coordinator endpoint: refuses bodies over the real limit as the server does, records the rest;
 * `reachable: false` makes it fail as an unreachable host does (after `reachableCalls` answered requests).
 */
function recordingFetch(opts: { reachableCalls?: number } = {}) {
  const got: SignedReceipt[] = [];
  const sizes: number[] = [];
  const link = { calls: 0, reachableCalls: opts.reachableCalls ?? Infinity };
  const f = (async (_url: string, init: { body: string }) => {
    if (++link.calls > link.reachableCalls) throw new TypeError('fetch failed');
    const size = new TextEncoder().encode(init.body).byteLength;
    sizes.push(size);
    if (size > MAX_BODY_BYTES) return new Response(JSON.stringify({ error: 'too large' }), { status: 413 });
    const { receipts } = JSON.parse(init.body) as { receipts: SignedReceipt[] };
    got.push(...receipts);
    return new Response(JSON.stringify({ accepted: receipts.length, rejected: [] }), { status: 200 });
  }) as unknown as typeof fetch;
  return { f, got, sizes, link };
}

describe('receipt reporter', () => {
  const tmp = tempDir();
  let coord: Coordinator | undefined;
  afterAll(async () => {
    await coord?.stop();
    tmp.cleanup();
  });

  it('packs receipts into bodies under the budget, in order, none lost or repeated', async () => {
    const signed = await Promise.all(
      Array.from({ length: 700 }, (_, i) => signReceipt(key, { ...receiptOf(i), peerId })),
    );
    const bodies = packBodies(signed, 20_000);
    expect(bodies.length).toBeGreaterThan(1);
    for (const b of bodies) expect(new TextEncoder().encode(b.json).byteLength).toBeLessThanOrEqual(20_000);
    const back = bodies.flatMap((b) => (JSON.parse(b.json) as { receipts: SignedReceipt[] }).receipts);
    expect(back).toEqual(signed);
    expect(bodies.map((b) => b.count).reduce((a, c) => a + c, 0)).toBe(700);
  });

  it('sends 600 queued receipts in requests the coordinator accepts (256 in one went over the limit)', async () => {
    const { f, got, sizes } = recordingFetch();
    const r = new ReceiptReporter({ key, peerId, coordinatorUrl: 'http://coordinator', fetch: f });
    for (let i = 0; i < 600; i++) r.add(unit(Math.floor(i / 8), i % 8), context);
    await r.flush();
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_BODY_BYTES);
    expect(got.map((x) => [x.step, x.micro])).toEqual(
      Array.from({ length: 600 }, (_, i) => [Math.floor(i / 8), i % 8]),
    );
    expect(r.stats).toMatchObject({ queued: 600, accepted: 600, rejected: 0, dropped: 0 });
  });

  it('keeps what an unreachable coordinator did not answer, and sends each receipt once when it is back', async () => {
    const endpoint = recordingFetch({ reachableCalls: 1 });
    const r = new ReceiptReporter({ key, peerId, coordinatorUrl: 'http://coordinator', fetch: endpoint.f });
    for (let i = 0; i < 400; i++) r.add(unit(i, 0), context);
    await r.flush();
    const first = endpoint.got.length;
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThan(400);
    endpoint.link.reachableCalls = Infinity; // back up
    await r.flush();
    const steps = endpoint.got.map((x) => x.step);
    expect(steps).toEqual(Array.from({ length: 400 }, (_, i) => i));
    expect(r.stats.accepted).toBe(400);
  });

  it('backs off while the coordinator answers 503, and delivers everything once it is back', async () => {
    let calls = 0;
    let up = false;
    const got: SignedReceipt[] = [];
    const f = (async (_url: string, init: { body: string }) => {
      calls++;
      if (!up) return new Response(JSON.stringify({ error: 'restarting' }), { status: 503 });
      got.push(...(JSON.parse(init.body) as { receipts: SignedReceipt[] }).receipts);
      return new Response(JSON.stringify({ accepted: 1, rejected: [] }), { status: 200 });
    }) as unknown as typeof fetch;
    const lines: string[] = [];
    const r = new ReceiptReporter({
      key,
      peerId,
      coordinatorUrl: 'http://coordinator',
      fetch: f,
      maxBackoffMs: 400,
      log: (l) => lines.push(l),
    });
    r.add(unit(0, 0), context);
    r.start(20);
    await new Promise((done) => setTimeout(done, 1500));
    // Every 20 ms would be ~75 tries; doubling from 20 ms to a 400 ms cap makes ~8.
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(calls).toBeLessThanOrEqual(15);
    expect(r.unacknowledged).toBe(1);
    expect(lines.some((l) => /answered 503 \(restarting\); 1 kept for later/.test(l))).toBe(true);
    up = true;
    const until = Date.now() + 3000;
    while (r.unacknowledged > 0 && Date.now() < until) await new Promise((done) => setTimeout(done, 20));
    await r.stop();
    expect(got.map((x) => x.step)).toEqual([0]);
    expect(r.stats).toMatchObject({ accepted: 1, rejected: 0 });
  });

  it('a real coordinator answers every request of a large batch (no 413), refusing only with a reason', async () => {
    const logs = memoryLog();
    coord = await Coordinator.start({ dbPath: join(tmp.dir, 'c.db'), heartbeatMs: 1000, log: logs.log });
    const res = await fetch(`${coord.url}/api/models`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: model.id, name: model.name, spec: model.spec }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const lines: string[] = [];
    const r = new ReceiptReporter({ key, peerId, coordinatorUrl: coord.url, log: (l) => lines.push(l) });
    for (let i = 0; i < 600; i++) r.add(unit(i, 0), context);
    await r.flush();
    // This peer never held a stage, so the coordinator refuses each receipt, one by one, with that reason.
    expect(r.stats.rejected).toBe(600);
    expect(lines.some((l) => / refused \(413\)/.test(l))).toBe(false);
    expect(lines.some((l) => /receipt refused: /.test(l))).toBe(true);
  });
});

function receiptOf(i: number) {
  return {
    model: model.id,
    round: 1,
    stage: 0,
    replica: 0,
    replicas: 1,
    step: i,
    micro: 0,
    kind: 'train' as const,
    flops: 1000,
    inputHash: hash(i),
    outputHash: hash(i + 1),
  };
}
