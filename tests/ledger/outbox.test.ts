/**
 * Receipts exactly once: a worker-like process queues receipts to its file outbox while the coordinator is down
 * and is SIGKILLed mid-stream; a new process with the same outbox sends them through an answer lost on the way
 * back and a coordinator restart. Every receipt the outbox held is credited once (rows counted in the
 * coordinator's database), the retried ones answered as duplicates; the outbox reader survives torn lines.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { FileOutbox } from '../../src/ledger/outbox-file.ts';
import { signReceipt, type WorkReceipt } from '../../src/ledger/receipt.ts';
import { loadOrCreateKey } from '../../src/net/identity-node.ts';
import { stageSpecs } from '../../src/train/run-derived.ts';
import type { WorkContext } from '../../src/train/work.ts';
import { memoryLog, tempDir, tinyModel } from '../coordinator/fixtures.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

function child(mode: 'queue' | 'drain', options: unknown, lines: string[]): ChildProcess {
  const c = spawn(
    join(ROOT, 'node_modules/.bin/node'),
    ['--import', './scripts/register.ts', 'tests/ledger/outbox-child.ts', mode, JSON.stringify(options)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let rest = '';
  const keep = (d: Buffer) => {
    const parts = (rest + String(d)).split('\n');
    rest = parts.pop() ?? '';
    lines.push(...parts);
  };
  c.stdout!.on('data', keep);
  c.stderr!.on('data', keep);
  return c;
}

async function until<T>(what: string, fn: () => T | undefined, lines: string[], ms = 90_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; output:\n${lines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A hop between the reporter and the coordinator that can be down (drops every connection), or forward a
 * request and then drop the connection instead of answering (the coordinator stored it; the worker never heard).
 */
function proxy() {
  const state = {
    target: '',
    mode: 'down' as 'down' | 'pass',
    /** Requests still to forward and then cut, and what to run once one is cut. */
    loseAnswers: 0,
    onLost: async () => {},
    hold: Promise.resolve(),
    forwarded: 0,
    lost: 0,
  };
  const server: Server = createServer(async (req, res) => {
    if (state.mode === 'down') return void req.socket.destroy();
    await state.hold;
    const body: Buffer[] = [];
    for await (const chunk of req) body.push(chunk as Buffer);
    const target = new URL(req.url ?? '/', state.target);
    const out = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (c) => chunks.push(c));
      answer.on('end', () => {
        state.forwarded++;
        if (state.loseAnswers > 0) {
          state.loseAnswers--;
          state.lost++;
          req.socket.destroy();
          state.hold = state.onLost();
          return;
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.end(Buffer.concat(chunks));
      });
    });
    out.on('error', () => req.socket.destroy());
    out.end(Buffer.concat(body));
  });
  return { server, state };
}

describe('receipt outbox', () => {
  const tmp = tempDir();
  const coords: Coordinator[] = [];
  const children: ChildProcess[] = [];
  let hop: ReturnType<typeof proxy> | undefined;
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    hop?.server.close();
    for (const c of coords) await c.stop();
    tmp.cleanup();
  });

  it('skips a torn or unreadable line with a log line, keeps the rest, and stays appendable', async () => {
    const path = join(tmp.dir, 'unit', 'receipts.jsonl');
    const r = (step: number): WorkReceipt => ({
      model: 'm',
      round: 1,
      stage: 0,
      replica: 0,
      replicas: 1,
      step,
      micro: 0,
      kind: 'train',
      flops: 1,
      inputHash: '0x00',
      outputHash: '0x01',
      peerId: 'p',
    });
    const a = new FileOutbox(path);
    const entries = await a.append([r(0), r(1), r(2)]);
    await a.remove([entries[1].id]);
    await a.close();
    // A line glued from garbage mid-file, and a last line cut short by SIGKILL.
    const text = readFileSync(path, 'utf8');
    writeFileSync(path, `${text}{"id":99,"r":{"model"\n`);
    appendFileSync(path, '{"id":100,"r":{"model":"m","ro');
    const logs: string[] = [];
    const b = new FileOutbox(path, (l) => logs.push(l));
    expect((await b.load()).map((e) => e.receipt.step)).toEqual([0, 2]);
    expect(logs.some((l) => /torn last line/.test(l))).toBe(true);
    expect(logs.some((l) => /unreadable line/.test(l))).toBe(true);
    await b.append([r(3)]);
    await b.close();
    const c = new FileOutbox(path, (l) => logs.push(`again: ${l}`));
    expect((await c.load()).map((e) => e.receipt.step)).toEqual([0, 2, 3]);
    expect(logs.filter((l) => l.startsWith('again'))).toEqual([]);
    await c.close();
  });

  it('credits every receipt of a SIGKILLed worker once, through a lost answer and a coordinator restart', async () => {
    const logs = memoryLog();
    const dbPath = join(tmp.dir, 'c.db');
    const start = async () => {
      const c = await Coordinator.start({ dbPath, heartbeatMs: 60_000, log: logs.log });
      coords.push(c);
      return c;
    };
    let coord = await start();
    const model = tinyModel('outbox-test', [2, 2]);
    const api = async (path: string, body: unknown) => {
      const res = await fetch(`${coord.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as any };
    };
    expect((await api('/api/models', { id: model.id, name: model.name, spec: model.spec })).status).toBe(201);
    const keyPath = join(tmp.dir, 'worker.key');
    const key = await loadOrCreateKey(keyPath);
    const peerId = peerIdFromPrivateKey(key).toString();
    const joined = await api('/api/peers/join', { peerId, kind: 'node', tokensPerSecond: 100 });
    const stage = joined.json.assignment.stage as number;
    const steps = 10;
    for (let step = 0; step < steps; step++)
      expect((await api(`/api/models/${model.id}/metrics`, { step, loss: 3 })).status).toBe(201);
    const context: WorkContext = {
      model: model.id,
      round: 1,
      spec: stageSpecs(model.spec)[stage],
      replica: 0,
      replicas: 1,
      cfg: model.spec.model,
      batch: model.spec.batch,
      seq: model.spec.model.context,
    };

    hop = proxy();
    await new Promise<void>((r) => hop!.server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(hop.server.address() as AddressInfo).port}`;
    const outboxPath = join(tmp.dir, 'worker.state', 'receipts.jsonl');
    const options = { key: keyPath, outbox: outboxPath, url, peerId, context, steps, perStep: 40 };

    // 1. The coordinator is unreachable: the worker queues, and is killed while it goes on queueing.
    const aLines: string[] = [];
    const a = child('queue', options, aLines);
    children.push(a);
    const queuedBeforeKill = await until(
      'the worker to queue 300 receipts',
      () => {
        const n = Math.max(0, ...aLines.map((l) => Number(/^queued (\d+)$/.exec(l)?.[1] ?? 0)));
        return n >= 300 ? n : undefined;
      },
      aLines,
    );
    a.kill('SIGKILL');
    await new Promise((r) => a.once('exit', r));
    expect(aLines.some((l) => /coordinator unreachable/.test(l))).toBe(true);
    expect(Number(coord.store.connection.prepare('SELECT COUNT(*) AS n FROM receipts').get()!.n)).toBe(0);

    // What the outbox holds after the kill: at least every receipt the worker reported queued.
    const held = await (async () => {
      const o = new FileOutbox(outboxPath);
      const entries = await o.load();
      await o.close();
      return entries.map((e) => e.receipt);
    })();
    expect(held.length).toBeGreaterThanOrEqual(queuedBeforeKill);
    expect(new Set(held.map((r) => `${r.step}/${r.micro}`)).size).toBe(held.length);

    // 2. A new process sends them. The first answer is lost after the coordinator stored the batch, and the
    // coordinator restarts before the retry arrives.
    hop.state.target = coord.url;
    hop.state.mode = 'pass';
    hop.state.loseAnswers = 1;
    hop.state.onLost = async () => {
      await coord.stop();
      coord = await start();
      hop!.state.target = coord.url;
    };
    const bLines: string[] = [];
    const b = child('drain', options, bLines);
    children.push(b);
    const stats = await until(
      'the new worker to send its outbox',
      () => {
        const done = bLines.find((l) => l.startsWith('done '));
        return done ? (JSON.parse(done.slice(5)) as Record<string, number>) : undefined;
      },
      bLines,
    );
    expect(hop.state.lost).toBe(1);
    expect(stats.restored).toBe(held.length);
    expect(stats.left).toBe(0);
    expect(stats.rejected).toBe(0);
    // The lost batch came back as duplicates: acknowledged, not credited again.
    expect(stats.duplicates).toBeGreaterThan(0);
    expect(stats.accepted + stats.duplicates).toBe(held.length);
    expect(bLines.some((l) => /left unacknowledged by an earlier run/.test(l))).toBe(true);

    const rows = coord.store.connection
      .prepare('SELECT step, micro, COUNT(*) AS n FROM receipts WHERE peer_id = ? GROUP BY step, micro')
      .all(peerId) as Array<{ step: number; micro: number; n: number }>;
    expect(rows.every((r) => Number(r.n) === 1)).toBe(true);
    expect(new Set(rows.map((r) => `${r.step}/${r.micro}`))).toEqual(new Set(held.map((r) => `${r.step}/${r.micro}`)));

    // 3. An acknowledged batch posted again (its answer lost once more): every receipt answered duplicate, no row.
    const again = await Promise.all(held.slice(0, 50).map((r) => signReceipt(key, r)));
    const res = await api(`/api/models/${model.id}/receipts`, { receipts: again });
    expect(res.status).toBe(200);
    expect(res.json.accepted).toBe(0);
    expect(res.json.rejected.length).toBe(50);
    expect(res.json.rejected.every((r: { duplicate?: boolean }) => r.duplicate === true)).toBe(true);
    const count = coord.store.connection.prepare('SELECT COUNT(*) AS n FROM receipts').get()!.n;
    expect(Number(count)).toBe(held.length);
  }, 240_000);
});
