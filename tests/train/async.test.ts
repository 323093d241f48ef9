import { describe, expect, it } from 'vitest';
import type { Codec } from '../../src/compress/codec.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages } from '../../src/model/stages.ts';
import { NonFiniteTensorError, Pipeline } from '../../src/train/pipeline.ts';
import { asyncOneFOneB, oneFOneB, type AsyncOp } from '../../src/train/schedule.ts';
import { testGpu } from '../gpu-fixture.ts';
import { adam, B, cfg, expectSameParams, microBatches, params, T } from './fixtures.ts';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const show = (ops: AsyncOp[]) =>
  ops.map((o) => (o.op === 'U' ? `U${o.step}` : `${o.op}${o.step}.${o.micro}`)).join(' ');

describe('asynchronous 1F1B schedule', () => {
  it('with staleness 0 is the synchronous 1F1B of each step, updates between steps', () => {
    const N = 4;
    for (let s = 0; s < N; s++) {
      const ops = asyncOneFOneB(s, N, [range(5), range(5)], 0);
      const want = [0, 1].flatMap((k) => [...oneFOneB(s, N, range(5)).map((o) => `${o.op}${k}.${o.micro}`), `U${k}`]);
      expect(show(ops)).toBe(want.join(' '));
      expect(ops.every((o) => o.op !== 'F' || o.delay === 0)).toBe(true);
    }
  });

  it('bounds the delay by the staleness, keeps ≤ N−s in flight, and updates right after a step drains', () => {
    const N = 4;
    for (const staleness of [1, 2, 3]) {
      for (const M of [1, 2, 4, 8]) {
        for (let s = 0; s < N; s++) {
          const ops = asyncOneFOneB(
            s,
            N,
            range(6).map(() => range(M)),
            staleness,
          );
          let inFlight = 0;
          let version = 0;
          const done = new Set<string>();
          for (const o of ops) {
            if (o.op === 'F') {
              inFlight++;
              expect(o.delay).toBe(o.step - version);
              expect(o.delay).toBeGreaterThanOrEqual(0);
              expect(o.delay).toBeLessThanOrEqual(staleness);
            } else if (o.op === 'B') {
              inFlight--;
              expect(o.step).toBeGreaterThanOrEqual(version); // no backward after its step's update
              done.add(`${o.step}.${o.micro}`);
            } else {
              expect(o.step).toBe(version++);
              for (const m of range(M)) expect(done.has(`${o.step}.${m}`)).toBe(true);
            }
            expect(inFlight).toBeLessThanOrEqual(N - s);
          }
          expect(version).toBe(6);
          expect(done.size).toBe(6 * M);
        }
      }
    }
    // Stage 0 of 4 with 4 micro-batches: the next step's warm-up forwards fill the drain of the current one.
    expect(show(asyncOneFOneB(0, 4, [range(4), range(4)], 1))).toBe(
      'F0.0 F0.1 F0.2 F0.3 B0.0 F1.0 B0.1 F1.1 B0.2 F1.2 B0.3 U0 F1.3 B1.0 B1.1 B1.2 B1.3 U1',
    );
  });
});

describe('weight stashing and look-ahead (Stage)', () => {
  const M1 = microBatches(40, 2);
  const full = splitStages(cfg, 1)[0];
  const fwdBwd = (st: Stage, id: number, mb = M1[1], weights?: Parameters<Stage['forward']>[1]) => {
    const r = st.forward({ id, batch: B, seq: T, ids: mb.ids, targets: mb.targets }, weights);
    st.gpu.release(r.loss, r.logits);
    return r;
  };

  it('a backward after an update uses the weights its forward used', async () => {
    const gpu = await testGpu();
    const [a, b, c] = [0, 1, 2].map(() => Stage.create(gpu, cfg, full));
    // a: gradients of micro-batch 1 taken on a stash of w0, with an update landing in between.
    fwdBwd(a, 0, M1[0]);
    a.backward(0);
    const stash = a.weightSet();
    fwdBwd(a, 1, M1[1], stash);
    await a.applyStep(adam);
    a.backward(1);
    // b: the same gradients taken on w0 with nothing in between.
    fwdBwd(b, 1);
    b.backward(1);
    // c: no stash: the backward mixes w0 activations with updated weights.
    fwdBwd(c, 0, M1[0]);
    c.backward(0);
    fwdBwd(c, 1);
    await c.applyStep(adam);
    c.backward(1);
    const [ga, gb, gc] = await Promise.all([a.readGrads(), b.readGrads(), c.readGrads()]);
    expectSameParams(ga, gb, { atol: 0, rtol: 0 });
    expect([...gc].some(([k, v]) => v.some((x, i) => x !== gb.get(k)![i]))).toBe(true);
    expect(stash.tensors.size).toBe(0); // released by the last backward that held it
    for (const st of [a, b, c]) st.destroy();
  });

  it('look-ahead weights are w + d·(w − w_prev)', async () => {
    const gpu = await testGpu();
    const st = Stage.create(gpu, cfg, full);
    fwdBwd(st, 0, M1[0]);
    st.backward(0);
    const before = await st.readParams();
    st.rememberWeights();
    await st.applyStep(adam);
    const after = await st.readParams();
    const ahead = st.weightSet(2);
    for (const [name, t] of ahead.tensors) {
      const got = (await gpu.read(t)) as Float32Array;
      const w = after.get(name)!;
      const p = before.get(name)!;
      const want = w.map((x, i) => x + 2 * (x - p[i]));
      for (let i = 0; i < w.length; i++)
        expect(Math.abs(got[i] - want[i]), `${name}[${i}]`).toBeLessThanOrEqual(1e-6 + 1e-6 * Math.abs(want[i]));
    }
    // Used by one forward, released by its backward.
    fwdBwd(st, 1, M1[1], ahead);
    st.backward(1);
    expect(ahead.tensors.size).toBe(0);
    st.destroy();
  });
});

describe('asynchronous pipeline', () => {
  const steps = (from: number, n: number, M: number) => range(n).map((k) => microBatches(from + k, M));

  it('staleness 0 trains exactly like the synchronous engine', async () => {
    const gpu = await testGpu();
    const sync = Pipeline.create(gpu, { model: cfg, stages: 4, adam });
    const asyn = Pipeline.create(gpu, { model: cfg, stages: 4, adam });
    const data = steps(50, 3, 4);
    const want: number[] = [];
    for (const mb of data) want.push((await sync.trainStep(mb, B, T)).loss);
    const seen: number[] = [];
    const run = await asyn.trainAsync(data, B, T, {
      staleness: 0,
      correction: 'nesterov',
      onStep: (r) => seen.push(r.step),
    });
    expect(run.steps.map((r) => r.loss)).toEqual(want);
    expect(seen).toEqual([0, 1, 2]);
    expect(run.steps.every((r) => r.maxDelay === 0)).toBe(true);
    expectSameParams(await params(sync), await params(asyn), { atol: 0, rtol: 0 });
    sync.destroy();
    asyn.destroy();
  });

  it('staleness 1 runs forwards on stale weights, with and without look-ahead, and still learns', async () => {
    const gpu = await testGpu();
    const data = steps(60, 24, 4);
    for (const correction of ['none', 'nesterov'] as const) {
      const p = Pipeline.create(gpu, { model: cfg, stages: 4, adam: { ...adam, lr: 1e-2 } });
      const run = await p.trainAsync(data, B, T, { staleness: 1, correction });
      expect(run.steps[0].maxDelay).toBe(0);
      expect(run.steps.slice(1).every((r) => r.maxDelay === 1)).toBe(true);
      expect(run.steps.every((r) => r.refused.length === 0 && Number.isFinite(r.loss))).toBe(true);
      const first = run.steps[0].loss;
      const last = run.steps.at(-1)!.loss;
      expect(first).toBeGreaterThan(Math.log(cfg.vocab) - 0.3);
      expect(last, `${correction}: ${first} → ${last}`).toBeLessThan(first * 0.7);
      expect(p.step).toBe(24);
      expect(p.stages.every((s) => s.inFlight === 0)).toBe(true);
      p.destroy();
    }
  });

  it('clips with the global norm of the previous step, without a barrier', async () => {
    const gpu = await testGpu();
    const data = steps(90, 3, 4);
    const clipped = Pipeline.create(gpu, { model: cfg, stages: 4, adam, clipNorm: 0.05 });
    const free = Pipeline.create(gpu, { model: cfg, stages: 4, adam });
    const a = await clipped.trainAsync(data, B, T, { staleness: 1, correction: 'nesterov' });
    await free.trainAsync(data, B, T, { staleness: 1, correction: 'nesterov' });
    expect(a.steps.every((r) => r.refused.length === 0 && Number.isFinite(r.loss))).toBe(true);
    const [pc, pf] = [await params(clipped), await params(free)];
    expect([...pc].some(([k, v]) => v.some((x, i) => Math.abs(x - pf.get(k)![i]) > 1e-6))).toBe(true);
    clipped.destroy();
    free.destroy();
  });

  it('a NaN at a boundary stops the run; updates already applied stay, nothing is left in flight', async () => {
    const gpu = await testGpu();
    let decoded = 0;
    const poisonAt = 9; // the third step's first activation on 4 micro-batches per step
    const nanCodec: Codec = {
      name: 'test-nan',
      encode: (x) => new Uint8Array(x.slice().buffer),
      decode: (bytes) => {
        const x = new Float32Array(bytes.slice().buffer);
        if (++decoded === poisonAt) x[3] = Infinity;
        return x;
      },
      bytesPerToken: (w) => 4 * w,
    };
    const p = Pipeline.create(gpu, { model: cfg, stages: 2, adam, codecs: [nanCodec] });
    await expect(p.trainAsync(steps(70, 4, 4), B, T, { staleness: 1, correction: 'nesterov' })).rejects.toThrow(
      NonFiniteTensorError,
    );
    expect(p.step).toBeGreaterThanOrEqual(1);
    expect(p.step).toBeLessThan(4);
    expect(p.stages.every((s) => s.inFlight === 0)).toBe(true);
    const run = await p.trainAsync(steps(80, 2, 4), B, T, { staleness: 1, correction: 'nesterov' });
    expect(run.steps.every((r) => Number.isFinite(r.loss))).toBe(true);
    p.destroy();
  });
});
