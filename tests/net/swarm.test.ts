import { describe, expect, it } from 'vitest';
import { smallSpec } from '../../src/train/run-spec.ts';
import { exited, logTo, oneProcessLosses, swarmFixture } from './worker-processes.ts';

/**
 * SLOW (~1–2 min): the whole swarm for real. A coordinator (relay + API + SQLite) and two `npm run worker`
 * processes, each on its own Dawn device, train a 2-stage model over direct WebRTC; the losses the last stage
 * reports equal those of the same spec trained in one process. One worker runs under a 50 % duty cycle, the
 * other with inference priority 0.9: the device settings change when work runs, never what it computes.
 */
const spec = smallSpec({ layout: [1, 1], microBatches: 2, batch: 2, seed: 1 });
const STEPS = 4;

describe('swarm (slow)', () => {
  const swarm = swarmFixture('swarm');

  it('two worker processes train a 2-stage model over WebRTC exactly like one process', async () => {
    await swarm.start();
    await swarm.register('swarm-test', 'swarm test', spec);
    const logs: string[] = [];
    const exits = [1, 2].map((i) => {
      const child = swarm.worker(swarm.key(i), [
        '--steps',
        String(STEPS),
        '--tokens-per-second',
        String(100 * i),
        ...(i === 1 ? ['--duty-cycle', '0.5'] : ['--inference-priority', '0.9']),
      ]);
      logTo(child, logs);
      return exited(child);
    });
    const codes = await Promise.all(exits);
    const text = logs.join('');
    expect(codes, text).toEqual([0, 0]);
    expect(text).toMatch(/connected to 1 peer\(s\) over WebRTC/);

    const metrics = await swarm.get<{ metrics: Array<{ step: number; kind: string; value: number }> }>(
      '/api/models/swarm-test/metrics',
    );
    const train = metrics.metrics.filter((m) => m.kind === 'train').sort((a, b) => a.step - b.step);
    expect(train.map((m) => m.step)).toEqual([0, 1, 2, 3]);

    // The same spec, same seed and batches, in one process.
    const losses = await oneProcessLosses(spec, STEPS);
    for (let step = 0; step < STEPS; step++) {
      expect(
        Math.abs(train[step].value - losses[step]),
        `step ${step}: swarm ${train[step].value} vs in-process ${losses[step]}`,
      ).toBeLessThan(1e-5);
    }
  });
});
