import type { ChildProcess } from 'node:child_process';
import { freePort } from '../browser/free-port.ts';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { smallSpec } from '../../src/train/run-spec.ts';
import { onOutput, spawnTs, swarmFixture, until } from './worker-processes.ts';

/**
 * SLOW (~1 min): the coordinator's relay restarted under a training swarm. A coordinator process and two
 * `npm run worker` processes train a 2-stage model; the test SIGKILLs the coordinator and starts it again at once
 * on the same database and ports. Its relay comes back with the same multiaddr (key kept beside the database),
 * and both workers win their reservations back on it (they log it). Then a THIRD worker joins: it takes a replica
 * of a stage and loads it from that stage's holder over WebRTC signalled through the restarted relay, and the
 * swarm trains on with it. Before, the relay got a new peer id on every start and the workers never re-reserved:
 * the newcomer's dials to the holders ended in NO_RESERVATION and it never got its stage.
 */
const spec = smallSpec({ layout: [1, 1], microBatches: 2, batch: 2, seed: 1 });
const MODEL = 'relay-restart-test';
/** The workers stop here; the test ends long before (a step takes ~0.2–0.4 s here). */
const END = 2000;
const LOG = join(tmpdir(), 'tessera-relay-restart-last.log');

interface Detail {
  model: { steps: { done: number } };
}

describe('relay restart (slow)', () => {
  const swarm = swarmFixture('relay-restart');
  const logs: string[] = [];
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    writeFileSync(LOG, logs.join(''));
  });

  it('a newcomer reaches the workers that were there before the coordinator restarted, and trains', async () => {
    const [apiPort, relayPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${apiPort}`;
    const startCoordinator = async () => {
      const child = spawnTs([
        'src/cli/coordinator.ts',
        ...['--port', String(apiPort), '--relay-port', String(relayPort), '--db', join(swarm.dir, 'c.db')],
        ...['--heartbeat-ms', '1000', '--no-chain'],
      ]);
      children.push(child);
      let relay = '';
      onOutput(child, (d) => {
        logs.push(`<coordinator> ${d}`);
        relay ||= /\[coordinator\] API \S+ {2}relay (\S+)/.exec(d)?.[1] ?? '';
      });
      await until('the coordinator to listen', () => relay !== '', 60_000, logs);
      return { child, relay };
    };
    const done = async () => ((await (await fetch(`${url}/api/models/${MODEL}`)).json()) as Detail).model.steps.done;
    const worker = (i: number) => {
      const child = spawnTs([
        'src/cli/worker.ts',
        ...['--coordinator', url, '--key', swarm.key(i), '--model', MODEL],
        ...['--until-step', String(END), '--tokens-per-second', '100'],
      ]);
      children.push(child);
      onOutput(child, (d) => logs.push(`<w${i}> ${d}`));
      return child;
    };
    const lines = (i: number) =>
      logs
        .join('')
        .split('\n')
        .filter((l) => l.startsWith(`<w${i}>`));

    const first = await startCoordinator();
    const reg = await fetch(`${url}/api/models`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: MODEL, name: 'relay restart test', spec }),
    });
    expect(reg.status, await reg.text()).toBe(201);
    const w = [worker(1), worker(2)];
    await until('training to start', async () => (await done()) >= 3, 120_000, logs);

    // SIGKILL the coordinator (relay and API together) and start it again on the same database and ports.
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.on('exit', r));
    const second = await startCoordinator();
    expect(second.relay, 'the restarted relay has another address').toBe(first.relay);
    const atRestart = await done();
    await until('a step after the restart', async () => (await done()) > atRestart, 60_000, logs);
    for (const i of [1, 2])
      await until(
        `worker ${i} to win its relay reservation back`,
        () => lines(i).some((l) => l.includes('relay reservation regained')),
        30_000,
        logs,
      );

    // A third worker: it gets a replica of a stage, whose holder can only be reached through the restarted relay.
    worker(3);
    let loadedAt = -1;
    await until(
      'the newcomer to load its stage from a holder',
      () => {
        const m = lines(3)
          .map((l) => /loaded stage \d+ at step (\d+) from/.exec(l))
          .find(Boolean);
        loadedAt = m ? Number(m[1]) : -1;
        return loadedAt >= 0;
      },
      120_000,
      logs,
    );
    await until('the swarm to train on with the newcomer', async () => (await done()) >= loadedAt + 3, 60_000, logs);
    expect(
      lines(3).some((l) => /\[worker \w+\] step \d+/.test(l)),
      logs.join(''),
    ).toBe(true);
    for (const c of w) expect(c.exitCode, logs.join('')).toBeNull();
    console.log(`relay restart: ${atRestart} steps at the restart; the newcomer loaded its stage at step ${loadedAt}`);
  });
});
