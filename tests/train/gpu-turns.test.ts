/**
 * A stage holder's device shared by training and inference: a real in-process pipeline trains through one
 * GpuTurns while inference-like GPU work — a forward through stage 0's current weights, read back — is
 * submitted through the same turns. The share decides how long inference waits behind training, the duty
 * cycle stretches a step's wall time without changing what it computes.
 */
import { describe, expect, it } from 'vitest';
import { GpuTurns } from '../../src/gpu/gpu-turns.ts';
import { Pipeline } from '../../src/train/pipeline.ts';
import { testGpu } from '../gpu-fixture.ts';
import { adam, B, cfg, microBatches, T } from './fixtures.ts';

const M = 4;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * What one inference turn saw: training turns finished when it was queued and when it started, and what still waited.
 */
interface Probe {
  queuedAfter: number;
  startedAfter: number;
  trainRunningAtQueue: boolean;
  trainWaitingAtStart: number;
}

/**
 * Trains one step while four requesters submit inference turns until training ends; returns what each
 * inference turn saw, and the number of training turns of the step.
 */
async function trainWithInference(
  p: Pipeline,
  turns: GpuTurns,
  step: number,
  requesters: number,
): Promise<{ probes: Probe[]; trainTurns: number }> {
  const stage0 = p.workers[0][0].stage;
  const { gpu } = p;
  const before = turns.stats.train.turns;
  const probes: Probe[] = [];
  let training = true;
  let n = 0;
  const infer = () => {
    const queuedAfter = turns.stats.train.turns - before;
    const trainRunningAtQueue = turns.current === 'train';
    const id = -10_000 - n++;
    return turns.run('infer', async () => {
      const startedAfter = turns.stats.train.turns - before;
      const trainWaitingAtStart = turns.waiting('train');
      const ids = microBatches(900, 1)[0].ids;
      const r = stage0.forward({ id, batch: B, seq: T, ids });
      const out = await gpu.read(r.output!);
      expect(out.every(Number.isFinite)).toBe(true);
      gpu.release(r.output);
      stage0.discard(id);
      return { queuedAfter, startedAfter, trainRunningAtQueue, trainWaitingAtStart };
    });
  };
  // Requesters that each send their next request 10 ms after the last answer (as a decode loop does). With
  // share 1, requests that keep the device busy would starve training — that is what share 1 means — so
  // that half of the test uses one requester.
  const client = async (offsetMs: number) => {
    await sleep(offsetMs);
    while (training) {
      probes.push(await infer());
      await sleep(10);
    }
  };
  const clients = Promise.all(Array.from({ length: requesters }, (_, k) => client(3 * k)));
  await p.trainStep(microBatches(step, M), B, T);
  training = false;
  await clients;
  return { probes, trainTurns: turns.stats.train.turns - before };
}

describe('one device, training and inference turns', () => {
  it(
    'share 1: an inference turn waits at most one training turn; share 0: it waits until training is ' + 'idle',
    async () => {
      const gpu = await testGpu();
      const turns = new GpuTurns({ inferenceShare: 1 });
      const p = Pipeline.create(gpu, { model: cfg, stages: 2, adam, turns });
      await p.trainStep(microBatches(0, M), B, T); // compiles the kernels: the timings below are warm

      const first = await trainWithInference(p, turns, 1, 1);
      const during = first.probes.filter((x) => x.trainRunningAtQueue);
      expect(during.length, 'inference submitted while a training turn ran').toBeGreaterThan(3);
      for (const x of first.probes) expect(x.startedAfter - x.queuedAfter).toBeLessThanOrEqual(1);

      turns.inferenceShare = 0;
      const second = await trainWithInference(p, turns, 2, 4);
      const queuedMidStep = second.probes.filter((x) => x.trainRunningAtQueue && x.queuedAfter < second.trainTurns - 1);
      expect(queuedMidStep.length).toBeGreaterThanOrEqual(2);
      for (const x of second.probes) expect(x.trainWaitingAtStart).toBe(0);
      // In one process the step keeps the device busy from its first turn to its last: inference queued
      // during it runs once the step's training turns are all done.
      for (const x of queuedMidStep) expect(x.startedAfter).toBe(second.trainTurns);
      expect(turns.stats.infer.failed + turns.stats.train.failed).toBe(0);
      p.destroy();
    },
  );

  it("duty cycle 0.5 doubles a step's wall time and leaves its losses unchanged", async () => {
    const gpu = await testGpu();
    const free = new GpuTurns();
    const capped = new GpuTurns();
    const a = Pipeline.create(gpu, { model: cfg, stages: 2, adam, turns: free });
    const b = Pipeline.create(gpu, { model: cfg, stages: 2, adam, turns: capped });
    // Warm-up step on both, uncapped (kernels compiled, buffers pooled).
    expect((await b.trainStep(microBatches(0, M), B, T)).loss).toBe((await a.trainStep(microBatches(0, M), B, T)).loss);
    capped.dutyCycle = 0.5;
    const wall = { free: 0, capped: 0 };
    const busy = { free: 0, capped: 0 };
    let rest = 0;
    for (let step = 1; step <= 3; step++) {
      const mb = microBatches(step, M);
      const free0 = free.stats.train.busyMs;
      const x = await a.trainStep(mb, B, T);
      busy.free += free.stats.train.busyMs - free0;
      const capped0 = capped.stats.train.busyMs;
      const rest0 = capped.stats.restMs;
      const y = await b.trainStep(mb, B, T);
      busy.capped += capped.stats.train.busyMs - capped0;
      rest += capped.stats.restMs - rest0;
      expect(y.losses).toEqual(x.losses);
      wall.free += x.ms;
      wall.capped += y.ms;
    }
    const seen =
      `capped ${wall.capped.toFixed(0)} ms wall / ${busy.capped.toFixed(0)} ms busy; free ` +
      `${wall.free.toFixed(0)} / ${busy.free.toFixed(0)}`;
    // Each turn of t ms is followed by a rest of t ms: the capped device computes half its wall time, the free one all
    // of it.
    expect(rest / busy.capped).toBeCloseTo(1, 5);
    // Rests and turns never overlap on the device, so the capped step's wall time holds both: at least twice its
    // compute. (How much longer, and the stretch against the free run, are timings: bench:turns measures them.)
    expect(wall.capped, seen).toBeGreaterThanOrEqual(0.95 * (busy.capped + rest));
    a.destroy();
    b.destroy();
  });
});
