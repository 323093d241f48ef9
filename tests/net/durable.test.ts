import type { ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { smallSpec } from '../../src/train/run-spec.ts';
import { exited, oneProcessLosses, swarmFixture, tagLines, until } from './worker-processes.ts';

/**
 * SLOW (~1.5 min): the model outlives every one of its holders. Two `npm run worker` processes train a 2-stage
 * model that snapshots every EVERY steps; both are SIGKILLed at once (no hand-off, nothing flushed), and, once the
 * coordinator has declared them gone, started again with the same keys and state folders. Checked: each stage
 * resumes from its own snapshot at the same step (the newest one both wrote), nothing restarts from the seed,
 * the coordinator holds every step exactly once, and the whole loss curve, across the restart, equals one process
 * training the same spec (the recomputed steps report the loss the coordinator already had).
 */
const EVERY = 4;
const spec = { ...smallSpec({ layout: [1, 1], microBatches: 2, batch: 2, seed: 3 }), snapshotEvery: EVERY };
const MODEL = 'durable-test';
const END = 16;

interface Metric {
  step: number;
  kind: string;
  value: number;
}
interface Detail {
  model: { steps: { done: number }; stages: Array<{ peers: Array<{ peerId: string }> }> };
}

describe('durable stages (slow)', () => {
  const swarm = swarmFixture('durable');
  const logs: string[] = [];
  const wait = (what: string, ok: () => Promise<boolean> | boolean, ms: number) => until(what, ok, ms, logs);
  const start = (i: number, tag: string, extra: string[]): ChildProcess => {
    const child = swarm.worker(swarm.key(i), ['--tokens-per-second', '100', ...extra]);
    tagLines(child, tag, logs);
    return child;
  };
  const done = async () => (await swarm.get<Detail>(`/api/models/${MODEL}`)).model.steps.done;

  it('resumes from the snapshots after every holder was SIGKILLed, and the loss curve goes on', async () => {
    await swarm.start({ heartbeatMs: 1000 });
    await swarm.register(MODEL, 'durable test', spec);
    const first = [start(1, 'a1', []), start(2, 'b1', [])];
    // Past the second snapshot step and a little beyond, so the restart has steps to recompute.
    await wait('training past the second snapshot', async () => (await done()) >= 2 * EVERY + 2, 180_000);
    for (const c of first) c.kill('SIGKILL');
    await Promise.all(first.map(exited));
    const killedAt = await done();
    const written = logs.join('').match(/snapshot stage \d+@\d+ of durable-test written/g) ?? [];
    expect(written.length, logs.join('')).toBeGreaterThanOrEqual(4);
    await wait(
      'the coordinator to declare both gone',
      async () => (await swarm.get<Detail>(`/api/models/${MODEL}`)).model.stages.every((s) => s.peers.length === 0),
      20_000,
    );

    const again = [start(1, 'a2', ['--until-step', String(END)]), start(2, 'b2', ['--until-step', String(END)])];
    const codes = await Promise.all(again.map(exited));
    const text = logs.join('');
    expect(codes, text).toEqual([0, 0]);

    // Both stages came back from their own snapshots, at one step, a snapshot step at or below what was recorded.
    const restarted = text.split('\n').filter((l) => l.startsWith('<a2>') || l.startsWith('<b2>'));
    const resumed = restarted
      .map((l) => /resumed stage (\d) of durable-test from its snapshot at step (\d+)/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({ stage: Number(m[1]), step: Number(m[2]) }));
    expect(resumed.map((r) => r.stage).sort(), text).toEqual([0, 1]);
    const step = resumed[0].step;
    expect(resumed[1].step).toBe(step);
    expect(step % EVERY).toBe(0);
    expect(step).toBeGreaterThanOrEqual(2 * EVERY);
    expect(step).toBeLessThanOrEqual(killedAt);
    expect(restarted.join('\n')).not.toMatch(/seeded initialisation/);

    // Every step recorded once, contiguous, and the curve is one process's: no jump back to the initial loss.
    const { metrics } = await swarm.get<{ metrics: Metric[] }>(`/api/models/${MODEL}/metrics?limit=1000`);
    const train = metrics.filter((m) => m.kind === 'train').sort((a, b) => a.step - b.step);
    expect(train.map((m) => m.step)).toEqual(Array.from({ length: END }, (_, i) => i));
    const losses = await oneProcessLosses(spec, END);
    for (let s = 0; s < END; s++)
      expect(Math.abs(train[s].value - losses[s]), `step ${s}: ${train[s].value} vs ${losses[s]}`).toBeLessThan(1e-4);
    // The recomputed steps were reported again and matched what the coordinator held.
    const again_ = [...text.matchAll(/step (\d+) was already recorded \(loss ([\d.]+); recomputed ([\d.]+)\)/g)];
    expect(again_.length).toBe(killedAt - step);
    for (const m of again_) expect(Math.abs(Number(m[2]) - Number(m[3]))).toBeLessThan(1e-4);
  }, 300_000);
});
