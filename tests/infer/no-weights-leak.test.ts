import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { greedyRequest } from '../../src/infer/backend.ts';
import { smallSpec } from '../../src/train/run-spec.ts';
import { serving, swarmFixture, swarmInference } from '../net/worker-processes.ts';

/**
 * SLOW (~1 min): a Protocol Model is used but never extracted. Three worker processes train a 2-stage model
 * over WebRTC (one stage replicated: gradients are averaged between its holders; audits on), serve inference
 * and validation; each records every byte it receives over libp2p and its stage's weights at every step
 * (TESSERA_WIRE_TAP). Then: no peer received 32 consecutive bytes of any snapshot of a stage it never held;
 * no HTTP answer of the coordinator and no log line carries 8 consecutive weights of any stage. Weights spliced
 * into a peer's real inbound bytes, or written as JSON numbers, are found: the scan sees them when they are there.
 */
const spec = smallSpec({ layout: [1, 1], microBatches: 2, batch: 1, seed: 5 });
const MODEL = 'leak-test';
const WINDOW = 8; // floats compared: 32 bytes

/**
 * Windows of 8 distinct non-zero weights (zeros and constant LayerNorm gains would match anything), keyed by their
 * first 8 bytes.
 */
class Probes {
  private readonly byKey = new Map<bigint, Array<{ stage: number; bytes: Uint8Array }>>();
  count = 0;

  add(stage: number, weights: Float32Array): void {
    const bytes = new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i + WINDOW <= weights.length; i += WINDOW) {
      const w = weights.subarray(i, i + WINDOW);
      if (w.some((v) => v === 0) || new Set(w).size < WINDOW) continue;
      const key = view.getBigUint64(i * 4, true);
      const list = this.byKey.get(key) ?? [];
      list.push({ stage, bytes: bytes.subarray(i * 4, (i + WINDOW) * 4) });
      this.byKey.set(key, list);
      this.count++;
    }
  }

  /** Stages whose weights appear in `data` at any byte offset (with how many hits each). */
  scan(data: Uint8Array, stages: (s: number) => boolean = () => true): Map<number, number> {
    const hits = new Map<number, number>();
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i + WINDOW * 4 <= data.length; i++) {
      const list = this.byKey.get(view.getBigUint64(i, true));
      if (!list) continue;
      for (const p of list) {
        if (!stages(p.stage)) continue;
        let same = true;
        for (let k = 8; k < p.bytes.length && same; k++) same = data[i + k] === p.bytes[k];
        if (same) hits.set(p.stage, (hits.get(p.stage) ?? 0) + 1);
      }
    }
    return hits;
  }

  /** Numbers written as text (JSON, logs), read back as float32 in order, then scanned. */
  scanText(text: string): Map<number, number> {
    const numbers = text.match(/-?\d+(?:\.\d+)?(?:e[-+]?\d+)?/gi) ?? [];
    const f = Float32Array.from(numbers, Number);
    return this.scan(new Uint8Array(f.buffer));
  }
}

describe('no weights leak beyond the stage a peer holds (slow)', () => {
  const swarm = swarmFixture('leak');
  const tap = join(swarm.dir, 'tap');
  const logs: string[] = [];

  function worker(i: number, untilStep: number, ready: RegExp): Promise<void> {
    const child = swarm.worker(
      swarm.key(i),
      ['--until-step', String(untilStep), '--stay', '--tokens-per-second', '100', '--infer-runtime', 'wgsl'],
      { ...process.env, TESSERA_WIRE_TAP: tap },
    );
    return serving(child, `w${i}`, logs, ready);
  }

  it('peers see only their own stage’s weights; API answers and logs show none', async () => {
    const coordLog: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => {
      coordLog.push(a.map(String).join(' '));
      log(...a);
    };
    try {
      const coord = await swarm.start({ inferenceAuditFraction: 1 });
      await swarm.register(MODEL, 'leak test', spec);
      // Three holders (one stage twice) train four steps, then stay to serve.
      await Promise.all([1, 2, 3].map((i) => worker(i, 4, /serving inference until stopped/)));

      // Inference and validation through the holders, then every read route of the API.
      const backend = swarmInference(coord);
      const out = await backend.generate(greedyRequest(MODEL, [5, 6, 7], 4), () => {});
      expect(out.tokens).toHaveLength(4);
      expect(Number.isFinite(await backend.evaluate(MODEL, Int32Array.of(5, 6, 7), Int32Array.of(6, 7, 8)))).toBe(true);
      const peers = coord.store.listPeers().map((p) => p.peerId);
      const routes = [
        '/api/health',
        '/api/models',
        `/api/models/${MODEL}`,
        `/api/models/${MODEL}/metrics`,
        `/api/models/${MODEL}/epochs`,
        `/api/models/${MODEL}/topology`,
        `/api/models/${MODEL}/throughput`,
        `/api/models/${MODEL}/verification`,
        `/api/models/${MODEL}/leaderboard?by=volunteer`,
        `/api/models/${MODEL}/leaderboard?by=team`,
        '/api/peers',
        '/api/events',
        '/api/teams',
        '/api/chain',
        ...peers.map((p) => `/api/peers/${p}/credits`),
        '/v1/models',
      ];
      const answers: string[] = [];
      for (const r of routes) answers.push(await (await fetch(coord.url + r)).text());
      expect(answers.join('').length).toBeGreaterThan(1000);

      await new Promise((r) => setTimeout(r, 1000)); // the last snapshots reach the disk
      const files = readdirSync(tap);
      const snapshots = files.filter((f) => f.endsWith('.f32'));
      const probes = new Probes();
      const held = new Map<string, Set<number>>(); // peer → stages it ever held
      for (const f of snapshots) {
        const [, peer, stage] = /^(\w+)\.stage(\d+)\.step\d+\.f32$/.exec(f)!;
        held.set(peer, (held.get(peer) ?? new Set()).add(Number(stage)));
        const b = readFileSync(join(tap, f));
        probes.add(Number(stage), new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4));
      }
      // Every worker held exactly one stage; both stages have snapshots over several steps.
      expect(held.size).toBe(3);
      for (const s of held.values()) expect(s.size).toBe(1);
      expect(snapshots.length).toBeGreaterThanOrEqual(6);
      expect(probes.count).toBeGreaterThan(1000);

      const inbounds = new Map<string, Buffer>();
      for (const [peer, stages] of held) {
        const inbound = readFileSync(join(tap, `${peer}.in`));
        inbounds.set(peer, inbound);
        expect(inbound.length).toBeGreaterThan(10_000); // it did receive activations, gradients, requests
        const foreign = probes.scan(inbound, (s) => !stages.has(s));
        expect(
          Object.fromEntries(foreign),
          `peer ${peer.slice(-6)} (stage ${[...stages]}) received another stage's weights`,
        ).toEqual({});
      }
      // Positive control: 64 weights of a snapshot spliced at an odd offset into a peer's real inbound bytes are found.
      const [peer0, inbound0] = [...inbounds][0];
      const other = snapshots.find((f) => !held.get(peer0)!.has(Number(/\.stage(\d+)\./.exec(f)![1])))!;
      const slice = readFileSync(join(tap, other)).subarray(4000, 4256);
      const spliced = Buffer.concat([inbound0.subarray(0, 12345), slice, inbound0.subarray(12345)]);
      expect(probes.scan(spliced, (s) => !held.get(peer0)!.has(s)).size).toBe(1);

      const api = probes.scanText(answers.join('\n'));
      expect(Object.fromEntries(api), 'an API answer carries weights').toEqual({});
      const logged = probes.scanText(logs.join('') + coordLog.join('\n'));
      expect(Object.fromEntries(logged), 'a log carries weights').toEqual({});
      // The text scan finds weights written as numbers when they are there.
      const sample = readFileSync(join(tap, snapshots[0]));
      const w = new Float32Array(sample.buffer, sample.byteOffset, sample.byteLength / 4);
      expect(probes.scanText(JSON.stringify({ leaked: Array.from(w.subarray(0, 4096)) })).size).toBe(1);
    } finally {
      console.log = log;
    }
  });
});
