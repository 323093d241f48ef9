import { describe, expect, it } from 'vitest';
import type { Codec } from '../../src/compress/codec.ts';
import { compare } from '../../src/ops/compare.ts';
import { InMemoryNetwork } from '../../src/train/memory-transport.ts';
import { NonFiniteTensorError, Pipeline } from '../../src/train/pipeline.ts';
import { idealBubble, oneFOneB } from '../../src/train/schedule.ts';
import { testGpu } from '../gpu-fixture.ts';
import { adam, B, cfg, expectSameParams, microBatches, params, T } from './fixtures.ts';

describe('1F1B schedule', () => {
  it('warms up N−s−1 forwards, alternates, drains; never more than N−s in flight', () => {
    const N = 4;
    const micros = [0, 1, 2, 3, 4, 5];
    for (let s = 0; s < N; s++) {
      const ops = oneFOneB(s, N, micros);
      expect(ops.filter((o) => o.op === 'F').map((o) => o.micro)).toEqual(micros);
      expect(ops.filter((o) => o.op === 'B').map((o) => o.micro)).toEqual(micros);
      let inFlight = 0;
      let peak = 0;
      for (const o of ops) {
        inFlight += o.op === 'F' ? 1 : -1;
        peak = Math.max(peak, inFlight);
      }
      expect(peak).toBe(N - s);
    }
    expect(
      oneFOneB(3, 4, [0, 1])
        .map((o) => o.op)
        .join(''),
    ).toBe('FBFB');
    expect(
      oneFOneB(0, 4, [0, 1])
        .map((o) => o.op)
        .join(''),
    ).toBe('FFBB');
    expect(idealBubble(4, 8)).toBeCloseTo(3 / 11);
  });
});

describe('pipeline engine (in-memory transport)', () => {
  it('4 stages train exactly like 1 stage: same losses and same weights after 4 steps', async () => {
    const gpu = await testGpu();
    const one = Pipeline.create(gpu, { model: cfg, stages: 1, adam });
    const four = Pipeline.create(gpu, { model: cfg, stages: 4, adam });
    for (let step = 0; step < 4; step++) {
      const mb = microBatches(step, 4);
      const a = await one.trainStep(mb, B, T);
      const b = await four.trainStep(mb, B, T);
      expect(Math.abs(a.loss - b.loss), `step ${step}: ${a.loss} vs ${b.loss}`).toBeLessThan(1e-5);
    }
    expectSameParams(await params(one), await params(four));
    one.destroy();
    four.destroy();
  });

  it('global gradient clipping across 4 stages equals clipping the unsplit model', async () => {
    const gpu = await testGpu();
    const clipNorm = 0.05; // well below the gradient norm at init, so the clip is active
    const one = Pipeline.create(gpu, { model: cfg, stages: 1, adam, clipNorm });
    const four = Pipeline.create(gpu, { model: cfg, stages: 4, adam, clipNorm });
    const free = Pipeline.create(gpu, { model: cfg, stages: 4, adam });
    for (let step = 0; step < 2; step++) {
      const mb = microBatches(20 + step, 2);
      const a = await one.trainStep(mb, B, T);
      const b = await four.trainStep(mb, B, T);
      await free.trainStep(mb, B, T);
      expect(a.gradNorm).toBeGreaterThan(clipNorm);
      expect(Math.abs(a.gradNorm! - b.gradNorm!) / a.gradNorm!).toBeLessThan(1e-5);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5);
    }
    const clipped = await params(four);
    expectSameParams(await params(one), clipped);
    // The clip changed the update: without it the weights differ.
    const unclipped = await params(free);
    expect([...clipped].some(([k, v]) => !compare(k, v, unclipped.get(k)!, { atol: 1e-6, rtol: 0 }).pass)).toBe(true);
    one.destroy();
    four.destroy();
    free.destroy();
  });

  it('two replicas of a stage averaging gradients equal one replica with the combined batch', async () => {
    const gpu = await testGpu();
    const single = Pipeline.create(gpu, { model: cfg, stages: 2, adam });
    const replicated = Pipeline.create(gpu, { model: cfg, stages: 2, replicas: [2, 3], adam });
    for (let step = 0; step < 2; step++) {
      const mb = microBatches(10 + step, 6);
      const a = await single.trainStep(mb, B, T);
      const b = await replicated.trainStep(mb, B, T);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5);
    }
    const want = await params(single);
    for (const ws of replicated.workers) {
      for (const w of ws) {
        const got = await w.stage.readParams();
        const subset = new Map([...want].filter(([k]) => got.has(k)));
        // Replicas sum gradients in another order than one replica accumulating them; Adam's m/√v turns
        // that float32 rounding into update differences of up to a few % of lr where a gradient is ≈ 0.
        expectSameParams(got, subset, { atol: 0.02 * adam.lr, rtol: 1e-4 });
      }
    }
    single.destroy();
    replicated.destroy();
  });

  it('learns: the loss on a predictable stream falls', async () => {
    const gpu = await testGpu();
    const p = Pipeline.create(gpu, { model: cfg, stages: 2, adam: { ...adam, lr: 1e-2 } });
    const first = (await p.trainStep(microBatches(0, 2), B, T)).loss;
    let last = first;
    for (let step = 1; step < 30; step++) last = (await p.trainStep(microBatches(step, 2), B, T)).loss;
    expect(first).toBeGreaterThan(Math.log(cfg.vocab) - 0.3);
    expect(last).toBeLessThan(first * 0.6);
    p.destroy();
  });

  it('shaped links (80 Mb/s, 50 ms) slow the step and count bytes on the wire', async () => {
    const gpu = await testGpu();
    const shaped = new InMemoryNetwork(() => ({ bitsPerSecond: 80e6, latencyMs: 50 }));
    const p = Pipeline.create(gpu, { model: cfg, stages: 3, adam, network: shaped });
    const r = await p.trainStep(microBatches(0, 2), B, T);
    // 2 boundaries × 2 micro-batches × (act + grad) frames of B·T·C float32 each, plus ids and header;
    // and the norm exchange: each of 3 stages sends one float64 to the 2 others.
    const payload = 2 * 2 * 2 * (B * T * cfg.dModel * 4 + B * T * 4 + 128) + 3 * 2 * (8 + 128);
    expect(r.bytes).toBe(payload);
    // Each micro-batch crosses 2 boundaries forward and 2 back: at least 4 latencies on the critical path.
    expect(r.ms).toBeGreaterThan(4 * 50);
    p.destroy();
  });

  it('a NaN at a boundary refuses the step: weights stay, the next step trains', async () => {
    const gpu = await testGpu();
    let poison = true;
    const nanCodec: Codec = {
      name: 'test-nan',
      encode: (x) => new Uint8Array(x.slice().buffer),
      decode: (bytes) => {
        const x = new Float32Array(bytes.slice().buffer);
        if (poison) x[5] = NaN;
        return x;
      },
      bytesPerToken: (w) => 4 * w,
    };
    const p = Pipeline.create(gpu, { model: cfg, stages: 2, adam, codecs: [nanCodec] });
    const before = await params(p);
    await expect(p.trainStep(microBatches(0, 2), B, T)).rejects.toThrow(NonFiniteTensorError);
    expectSameParams(await params(p), before, { atol: 0, rtol: 0 });
    expect(p.stages.every((s) => s.inFlight === 0)).toBe(true);
    poison = false;
    const ok = await p.trainStep(microBatches(0, 2), B, T);
    expect(Number.isFinite(ok.loss)).toBe(true);
    expect(p.step).toBe(1);
    p.destroy();
  });
});
