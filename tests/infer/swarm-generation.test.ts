import type { ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { greedyRequest } from '../../src/infer/backend.ts';
import { greedy } from '../../src/infer/sample.ts';
import { judgeEpoch } from '../../src/ledger/verdict.ts';
import { LedgerStore } from '../../src/coordinator/ledger-store.ts';
import { crossEntropyRef } from '../../src/ops/crossentropy.ref.ts';
import { StageInference } from '../../src/infer/stage-infer.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages } from '../../src/model/stages.ts';
import { smallSpec } from '../../src/train/run-spec.ts';
import { testGpu } from '../gpu-fixture.ts';
import { serving, swarmFixture, swarmInference, waitFor } from '../net/worker-processes.ts';

/**
 * SLOW (~1 min): generation through the swarm. Five `npm run worker` processes hold the four stages of a model
 * (one stage twice; seeded weights, no training: --until-step 0 --stay) and serve `/tessera/infer/1.0.0`; the
 * coordinator's backend walks a prompt through them with KV caches. Greedy tokens equal the same weights'
 * generation in one process; every hop is receipted into the ledger, the replicated stage's hops are replayed
 * on its replica (audit share 1) and judged equal by sketch; a holder that dies mid-generation is replaced.
 */
const spec = smallSpec({ layout: [1, 1, 1, 1], microBatches: 2, batch: 1, seed: 3 });
const MODEL = 'infer-test';
const PROMPT = [17, 250, 3, 99, 512];
const N = 8;

const TARGETS = [250, 3, 99, 512, 7];

async function inProcess(): Promise<{ tokens: number[]; loss: number }> {
  const gpu = await testGpu();
  const cfg = spec.model;
  const stages = splitStages(cfg, 4).map((s) => new StageInference(Stage.create(gpu, cfg, s), { maxSessions: 1 }));
  const out: number[] = [];
  let input: number[] = PROMPT;
  for (let i = 0; i < N; i++) {
    let x: unknown = Int32Array.from(input);
    for (const s of stages) {
      const r = i === 0 ? s.prefill('ref', x as Int32Array, { logits: 'last' }) : s.decode('ref', x as Int32Array);
      x = r.output ?? r.logits;
    }
    const logits = (await gpu.read(x as never)) as Float32Array;
    gpu.release(x as never);
    out.push(greedy(logits.subarray(logits.length - cfg.vocab)));
    input = [out[out.length - 1]];
  }
  // The validation loss of PROMPT → TARGETS: every position's logits, in a fresh session.
  let v: unknown = Int32Array.from(PROMPT);
  for (const s of stages) {
    const r = s.prefill('val', v as Int32Array, { logits: 'all' });
    v = r.output ?? r.logits;
  }
  const all = (await gpu.read(v as never)) as Float32Array;
  gpu.release(v as never);
  // the float64 reference, checked by finite differences
  const loss = crossEntropyRef(all, TARGETS, TARGETS.length, cfg.vocab).loss;
  for (const s of stages) {
    s.destroy();
    s.stage.destroy();
  }
  return { tokens: out, loss };
}

describe('inference through the swarm (slow)', () => {
  const swarm = swarmFixture('infer');
  const children = new Map<number, ChildProcess>();

  const countKind = (kind: string) =>
    Number(
      (
        swarm.coord.store.connection.prepare('SELECT COUNT(*) AS n FROM receipts WHERE kind = ?').get(kind) as {
          n: number;
        }
      ).n,
    );

  function worker(i: number, logs: string[]): Promise<void> {
    const child = swarm.worker(swarm.key(i), ['--until-step', '0', '--stay', '--tokens-per-second', '100']);
    children.set(i, child);
    return serving(child, `w${i}`, logs);
  }

  it(
    'greedy generation through four stage holders equals one process; hops are receipted and audited; a dead ' +
      'holder is replaced by its replica',
    async () => {
      const coord = await swarm.start({ inferenceAuditFraction: 1 });
      await swarm.register(MODEL, 'inference test', spec);
      const logs: string[] = [];
      // Five holders: one stage gets a replica, for the audits and the failover below.
      await Promise.all([1, 2, 3, 4, 5].map((i) => worker(i, logs)));
      const reference = await inProcess();
      const expected = reference.tokens;
      const backend = swarmInference(coord);
      const seen: number[] = [];
      const out = await backend.generate(greedyRequest(MODEL, PROMPT, N), (t) => void seen.push(t));
      expect(out.tokens, logs.join('')).toEqual(expected);
      expect(seen).toEqual(expected);
      expect(out.finish).toBe('length');
      // The coordinator's validation loss through the holders equals the in-process one (float32 logits, float64 sums).
      const loss = await backend.evaluate(MODEL, Int32Array.from(PROMPT), Int32Array.from(TARGETS));
      expect(Math.abs(loss - reference.loss)).toBeLessThan(1e-4);
      expect(loss).toBeGreaterThan(Math.log(spec.model.vocab) - 1); // an untrained model: near-uniform predictions
      // onToken can stop it early.
      const short = await backend.generate(greedyRequest(MODEL, PROMPT, N), (t) => t === expected[2]);
      expect(short).toEqual({ tokens: expected.slice(0, 3), finish: 'stop' });

      // Receipts: one per hop (N + 3 tokens' worth of rounds × 4 stages), each checked against the bytes and
      // stored; the replicated stage's hops were replayed on its replica and every replay agrees by sketch.
      await waitFor(
        () => backend.stats.receipts >= 4 * (N + 3) && backend.stats.auditHops <= countKind('infer-audit'),
        10_000,
      );
      expect(backend.stats.receiptsRefused, logs.join('')).toBe(0);
      expect(countKind('infer')).toBe(4 * (N + 3));
      expect(countKind('infer-audit')).toBe(N + 3);
      const receipts = new LedgerStore(coord.store).unsettledReceipts(MODEL, Number.MAX_SAFE_INTEGER);
      const judged = judgeEpoch(receipts, 4);
      expect(judged.audits.length).toBe(N + 3);
      expect(
        judged.audits.every((a) => a.result === 'match'),
        JSON.stringify(judged.audits.slice(0, 3)),
      ).toBe(true);
      expect(judged.verdicts.length).toBe(5);
      for (const v of judged.verdicts) {
        expect(v.caught).toBe(false);
        expect(v.credited).toBeGreaterThan(0);
      }
      // Prefill hops cost more than decode hops: the receipts carry the exact incremental FLOPs.
      const byStage0 = receipts
        .filter((r) => r.stage === 0 && r.kind === 'infer')
        .map((r) => r.flops)
        .sort((a, b) => b - a);
      expect(byStage0[0]).toBeGreaterThan(byStage0[byStage0.length - 1]);

      // Kill replica 0 of the replicated stage: the next generation fails over to replica 1 and still equals one
      // process.
      let assignments = coord.store.listAssignments(MODEL);
      await waitFor(() => (assignments = coord.store.listAssignments(MODEL)).length >= 3, 10_000, 200);
      const replicated = assignments.find((a) => assignments.filter((b) => b.stage === a.stage).length > 1)!;
      expect(replicated, JSON.stringify({ assignments, peers: coord.store.listPeers() })).toBeDefined();
      const first = assignments.find((a) => a.stage === replicated.stage && a.replica === 0)!;
      const ids = new Map<number, string>();
      for (const i of children.keys()) {
        const line = logs.find((l) => l.startsWith(`[w${i}]`) && /\[worker (\w{6})\]/.test(l));
        if (line) ids.set(i, /\[worker (\w{6})\]/.exec(line)![1]);
      }
      const dead = [...ids.entries()].find(([, suffix]) => first.peerId.endsWith(suffix))![0];
      children.get(dead)!.kill('SIGKILL');
      const again = await backend.generate(greedyRequest(MODEL, PROMPT, N), () => {});
      expect(again.tokens).toEqual(expected);
      expect(backend.stats.retries).toBeGreaterThan(0);
    },
  );
});
