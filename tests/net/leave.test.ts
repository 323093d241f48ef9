import type { ChildProcess } from 'node:child_process';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { loadOrCreateKey } from '../../src/net/identity-node.ts';
import { smallSpec } from '../../src/train/run-spec.ts';
import { exited, oneProcessLosses, swarmFixture, tagLines, until } from './worker-processes.ts';

/**
 * SLOW (~1.5 min): a graceful leave hands the stage over. Three `npm run worker` processes train a 2-stage model
 * (the third is a second replica of one stage). The only holder of the other stage gets SIGTERM: it finishes its
 * step, writes its stage, leaves with a hand-off and stays reachable; the coordinator moves the spare replica onto
 * the stage, and that peer fetches the stage from the departing one. Checked: the leaver exits cleanly after the
 * hand-off, its stage is served to its successor, nothing pauses or restarts from the seed, every step is
 * recorded once and the loss curve is one process's.
 */
const spec = { ...smallSpec({ layout: [1, 1], microBatches: 2, batch: 2, seed: 5 }), snapshotEvery: 1000 };
const MODEL = 'leave-test';
const END = 24;

interface Detail {
  model: { steps: { done: number }; stages: Array<{ index: number; peers: Array<{ peerId: string }> }> };
}

describe('graceful leave (slow)', () => {
  const swarm = swarmFixture('leave');
  const logs: string[] = [];
  const wait = (what: string, ok: () => Promise<boolean> | boolean, ms: number) => until(what, ok, ms, logs);
  const detail = async () => (await swarm.get<Detail>(`/api/models/${MODEL}`)).model;

  it('hands the stage of its only holder to the peer the coordinator moves onto it', async () => {
    await swarm.start({ heartbeatMs: 1000 });
    await swarm.register(MODEL, 'leave test', spec);
    const ids = await Promise.all(
      [1, 2, 3].map(async (i) => peerIdFromPrivateKey(await loadOrCreateKey(swarm.key(i))).toString()),
    );
    const children = new Map<string, ChildProcess>();
    for (const [i, id] of ids.entries()) {
      const child = swarm.worker(swarm.key(i + 1), ['--tokens-per-second', '100', '--until-step', String(END)]);
      tagLines(child, id.slice(-6), logs);
      children.set(id, child);
    }
    await wait(
      'three peers placed and training',
      async () => {
        const m = await detail();
        return m.steps.done >= 3 && m.stages.reduce((n, s) => n + s.peers.length, 0) === 3;
      },
      180_000,
    );
    const m = await detail();
    const sole = m.stages.find((s) => s.peers.length === 1)!;
    const leaver = sole.peers[0].peerId;
    const spare = m.stages.find((s) => s.peers.length === 2)!;
    children.get(leaver)!.kill('SIGTERM');
    const code = await exited(children.get(leaver)!);
    const others = [...children].filter(([id]) => id !== leaver).map(([, c]) => exited(c));
    const codes = await Promise.all(others);
    const text = logs.join('');
    expect(code, text).toBe(0);
    expect(codes, text).toEqual([0, 0]);

    // The leaver wrote its stage, handed it off, and served it to the replica moved onto its stage.
    const mine = text.split('\n').filter((l) => l.startsWith(`<${leaver.slice(-6)}>`));
    expect(mine.join('\n')).toMatch(new RegExp(`snapshot stage ${sole.index}@\\d+ of ${MODEL} written`));
    expect(mine.join('\n')).toMatch(new RegExp(`handing stage ${sole.index} of ${MODEL} off to`));
    const served = new RegExp(`served stage ${sole.index} of ${MODEL} at step (\\d+) to (\\w+)`).exec(mine.join('\n'));
    expect(served, text).not.toBeNull();
    expect(spare.peers.map((p) => p.peerId)).toContain(served![2]);
    expect(text).toMatch(new RegExp(`loaded stage ${sole.index} at step ${served![1]} from ${leaver.slice(-6)}`));
    expect(text).not.toMatch(/PAUSED|STAGE LOST/);

    const { metrics } = await swarm.get<{ metrics: Array<{ step: number; kind: string; value: number }> }>(
      `/api/models/${MODEL}/metrics?limit=1000`,
    );
    const train = metrics.filter((x) => x.kind === 'train').sort((a, b) => a.step - b.step);
    expect(train.map((x) => x.step)).toEqual(Array.from({ length: END }, (_, i) => i));
    const losses = await oneProcessLosses(spec, END);
    for (let s = 0; s < END; s++) expect(Math.abs(train[s].value - losses[s]), `step ${s}`).toBeLessThan(1e-4);
  }, 300_000);
});
