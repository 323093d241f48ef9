import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startCoordinator } from '../../src/cli/coordinator.ts';
import type { Coordinator } from '../../src/coordinator/index.ts';
import { loadCorpus } from '../../src/data/brown-node.ts';
import { learningRate, TrainingRun } from '../../src/train/recipe.ts';
import { presetSpec, type RunSpec } from '../../src/train/run-spec.ts';
import { testGpu } from '../gpu-fixture.ts';

/**
 * SLOW (~1–2 min): the whole swarm for real. A coordinator (relay + API + SQLite) and two `npm run worker`
 * processes, each on its own Dawn device, train a 2-stage model over direct WebRTC; the losses the last stage
 * reports equal those of the same spec trained in one process. One worker runs under a 50 % duty cycle, the
 * other with inference priority 0.9: the device settings change when work runs, never what it computes.
 */
const root = new URL('../../', import.meta.url).pathname;
const spec: RunSpec = {
  ...presetSpec(true),
  model: { vocab: 1024, dModel: 32, heads: 2, layers: 2, context: 32, seed: 1 },
  layout: [1, 1],
  codec: { name: 'none', tail: 0 },
  microBatches: 2,
  batch: 2,
  seed: 1,
  pricePer1kTokens: 0,
};
const STEPS = 4;

describe('swarm (slow)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-swarm-'));
  const children: ChildProcess[] = [];
  let coord: Coordinator | undefined;
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await coord?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('two worker processes train a 2-stage model over WebRTC exactly like one process', async () => {
    coord = await startCoordinator({ dbPath: join(dir, 'c.db'), heartbeatMs: 2000, registerDefault: false });
    const res = await fetch(`${coord.url}/api/models`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'swarm-test', name: 'swarm test', spec }),
    });
    expect(res.status).toBe(201);
    const logs: string[] = [];
    const exits = [1, 2].map((i) => {
      const child = spawn(
        join(root, 'node_modules/.bin/node'),
        [
          '--import',
          './scripts/register.ts',
          'src/cli/worker.ts',
          '--coordinator',
          coord!.url,
          '--key',
          join(dir, `w${i}.key`),
          '--steps',
          String(STEPS),
          '--tokens-per-second',
          String(100 * i),
          ...(i === 1 ? ['--duty-cycle', '0.5'] : ['--inference-priority', '0.9']),
        ],
        { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      children.push(child);
      child.stdout!.on('data', (d) => logs.push(String(d)));
      child.stderr!.on('data', (d) => logs.push(String(d)));
      return new Promise<number | null>((r) => child.on('exit', r));
    });
    const codes = await Promise.all(exits);
    const text = logs.join('');
    expect(codes, text).toEqual([0, 0]);
    expect(text).toMatch(/connected to 1 peer\(s\) over WebRTC/);

    const metrics = (await (await fetch(`${coord.url}/api/models/swarm-test/metrics`)).json()) as {
      metrics: Array<{ step: number; kind: string; value: number }>;
    };
    const swarm = metrics.metrics.filter((m) => m.kind === 'train').sort((a, b) => a.step - b.step);
    expect(swarm.map((m) => m.step)).toEqual([0, 1, 2, 3]);

    // The same spec, same seed and batches, in one process.
    const gpu = await testGpu();
    const run = TrainingRun.create(gpu, spec, await loadCorpus(spec.model.vocab));
    for (let step = 0; step < STEPS; step++) {
      run.adam.lr = learningRate(step, spec);
      const { loss } = await run.pipeline.trainStep(run.microBatches(step), spec.batch, spec.model.context);
      expect(
        Math.abs(swarm[step].value - loss),
        `step ${step}: swarm ${swarm[step].value} vs in-process ${loss}`,
      ).toBeLessThan(1e-5);
    }
    run.destroy();
  });
});
