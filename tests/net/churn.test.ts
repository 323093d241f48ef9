import type { ChildProcess } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { loadOrCreateKey } from '../../src/net/identity-node.ts';
import { smallSpec } from '../../src/train/run-spec.ts';
import { exited, oneProcessLosses, onOutput, swarmFixture, until } from './worker-processes.ts';

/**
 * SLOW (~1.5–2 min): churn for real. A coordinator (heartbeats every second) and three `npm run worker`
 * processes train a 2-stage model over direct WebRTC, the last stage replicated. Three things happen to them:
 *  1. the last stage's replica 0 — the worker that reports losses — SIGKILLs itself the moment it has applied
 *     step CRASH's update, before reporting it (`--crash-after-update`): the survivors applied that update too,
 *     but the coordinator never heard of the step, so they must roll it back and recompute it;
 *  2. a fourth worker joins and gets the replicated stage's weights and moments over `/tessera/stage/1.0.0`;
 *  3. the test SIGKILLs the other holder of that stage at whatever point of a step it is in.
 * Checked: each vanished peer is declared gone within seconds; training goes on to the end; the coordinator
 * holds every step exactly once, contiguous; each surviving worker's log accounts for every step applied
 * exactly once (rolled-back updates counted out); the newcomer's stage re-saves to the holder's checkpoint byte
 * for byte; and the whole loss curve equals the same spec trained in one process.
 */
const spec = smallSpec({ layout: [1, 1], microBatches: 4, batch: 2, seed: 1 });
const MODEL = 'churn-test';
const CRASH = 4;
/**
 * Long enough (a step takes ~0.2–0.4 s here) for a newcomer started after the first crash to join and train a while.
 */
const END = 100;

interface Metric {
  step: number;
  kind: string;
  value: number;
}
interface Detail {
  model: {
    steps: { done: number };
    stages: Array<{ index: number; peers: Array<{ peerId: string; replica: number }> }>;
  };
}
interface Events {
  events: Array<{ at: number; kind: string; detail: { peerId?: string } }>;
}

/** Every worker line of the last run, for reading after a failure. */
const LOG = join(tmpdir(), 'tessera-churn-last.log');

describe('churn (slow)', () => {
  const swarm = swarmFixture('churn');
  const children = new Map<string, ChildProcess>();
  const exits = new Map<string, Promise<number | null>>();
  const exitedAt = new Map<string, number>();
  const logs: string[] = [];
  const get = swarm.get;
  const wait = (what: string, ok: () => Promise<boolean> | boolean, ms: number) => until(what, ok, ms, logs);
  const spawnWorker = (peer: string, key: string, extra: string[] = []) => {
    const child = swarm.worker(key, ['--until-step', String(END), '--tokens-per-second', '100', ...extra]);
    children.set(peer, child);
    const tag = `<${peer.slice(-6)}> `;
    let partial = '';
    const keep = (d: string) => {
      const parts = (partial + d).split('\n');
      partial = parts.pop()!; // a line cut between two chunks waits for its end
      const lines = parts
        .filter(Boolean)
        .map((l) => `${tag}${l}\n`)
        .join('');
      logs.push(lines);
      appendFileSync(LOG, lines);
    };
    onOutput(child, keep);
    child.on('exit', () => exitedAt.set(peer, Date.now()));
    exits.set(peer, exited(child));
  };
  const done = async () => (await get<Detail>(`/api/models/${MODEL}`)).model.steps.done;
  /** When the coordinator declared `peer` gone after `since`. */
  const goneAfter = async (peer: string, since: number) => {
    let at = 0;
    await wait(
      `the coordinator to declare ${peer.slice(-6)} gone`,
      async () => {
        at =
          (await get<Events>('/api/events?limit=1000')).events.find(
            (e) => e.kind === 'gone' && e.detail.peerId === peer && e.at >= since,
          )?.at ?? 0;
        return at > 0;
      },
      15_000,
    );
    return at - since;
  };

  it(
    'rides out a reporter dying between its update and its report, a newcomer, and a SIGKILLed replica ' + 'holder',
    async () => {
      writeFileSync(LOG, '');
      await swarm.start({ heartbeatMs: 1000 });
      await swarm.register(MODEL, 'churn test', spec);
      const [w1, w2, w3, w4] = await Promise.all(
        [1, 2, 3, 4].map(async (i) => {
          const path = swarm.key(i);
          return { path, peer: peerIdFromPrivateKey(await loadOrCreateKey(path)).toString() };
        }),
      );
      // The first peer takes the costlier stage (the last, with the head) as its replica 0 and keeps it: it reports
      // losses.
      spawnWorker(w1.peer, w1.path, ['--crash-after-update', String(CRASH)]);
      await wait(
        'the first worker to join',
        async () => (await get<Detail>(`/api/models/${MODEL}`)).model.stages.some((s) => s.peers.length > 0),
        60_000,
      );
      spawnWorker(w2.peer, w2.path);
      spawnWorker(w3.peer, w3.path);
      await wait('training to start', async () => (await done()) >= 1, 90_000);
      const { model } = await get<Detail>(`/api/models/${MODEL}`);
      const last = model.stages[1].peers.sort((a, b) => a.replica - b.replica).map((p) => p.peerId);
      expect(last[0], JSON.stringify(model.stages)).toBe(w1.peer);
      expect(last.length).toBe(2);
      // w2 and w3 joined together: either may have become the reporter's sibling on the last stage.
      const sibling = [w2, w3].find((w) => w.peer === last[1])!;
      const first = [w2, w3].find((w) => w !== sibling)!;

      // 1. The reporter dies right after applying step CRASH's update.
      expect(await exits.get(w1.peer)).toBeNull(); // killed by a signal
      expect(await goneAfter(w1.peer, exitedAt.get(w1.peer)!)).toBeLessThan(5000);

      // 2. A newcomer joins and takes the last stage from its holder.
      spawnWorker(w4.peer, w4.path);
      let fetched = -1;
      await wait(
        'the newcomer to load its stage',
        () => {
          const m = new RegExp(`<${w4.peer.slice(-6)}> .*loaded stage \\d+ at step (\\d+)`).exec(logs.join(''));
          fetched = m ? Number(m[1]) : -1;
          return fetched >= 0;
        },
        90_000,
      );
      expect(fetched, 'training outran the newcomer: raise END').toBeLessThan(END - 15);
      await wait('the newcomer to train a few steps', async () => (await done()) >= fetched + 3, 60_000);

      // 3. SIGKILL the stage's other holder, wherever it is in its step.
      children.get(sibling.peer)!.kill('SIGKILL');
      const killedAt = Date.now();
      expect(await goneAfter(sibling.peer, killedAt)).toBeLessThan(5000);

      const codes = await Promise.all([first, w4].map((w) => exits.get(w.peer)!));
      const text = logs.join('');
      expect(codes, text).toEqual([0, 0]);
      expect(text).toMatch(new RegExp(`<${w1.peer.slice(-6)}> .*--crash-after-update ${CRASH}: killing this process`));

      // The coordinator holds each step once, contiguous.
      const { metrics } = await get<{ metrics: Metric[] }>(`/api/models/${MODEL}/metrics?limit=1000`);
      const train = metrics.filter((m) => m.kind === 'train').sort((a, b) => a.step - b.step);
      expect(train.map((m) => m.step)).toEqual(Array.from({ length: END }, (_, i) => i));

      // Every worker that lived to the end applied each step from where it started to END − 1 exactly once.
      let rollbacks = 0;
      for (const w of [first, w4]) {
        const applied = new Map<number, number>();
        const add = (k: number, d: number) => applied.set(k, (applied.get(k) ?? 0) + d);
        let start = 0;
        for (const l of text.split('\n').filter((x) => x.startsWith(`<${w.peer.slice(-6)}>`))) {
          const step = /\] step (\d+)\s\s/.exec(l) ?? /\] step (\d+): update applied/.exec(l);
          if (step) add(Number(step[1]), 1);
          const back = /rolled back stage \d+ from step \d+ to (\d+)/.exec(l);
          if (back) {
            add(Number(back[1]), -1);
            rollbacks++;
          }
          const loaded = /loaded stage \d+ at step (\d+)/.exec(l);
          if (loaded) start = Number(loaded[1]);
        }
        const expected = new Map(Array.from({ length: END - start }, (_, i) => [start + i, 1]));
        expect(new Map([...applied].filter(([, n]) => n !== 0)), `steps applied by ${w.peer}`).toEqual(expected);
      }
      // The reporter died between its update and its report: step CRASH was undone where it had been applied.
      expect(text).toMatch(new RegExp(`rolled back stage \\d+ from step ${CRASH + 1} to ${CRASH}`));

      // The newcomer holds exactly what the holder served.
      const loaded = new RegExp(
        `<${w4.peer.slice(-6)}> .*loaded stage (\\d+) at step (\\d+) from (\\w+): \\d+ bytes, sha256 (\\w+); ` +
          `re-saved here sha256 (\\w+)`,
      ).exec(text);
      expect(loaded, text).not.toBeNull();
      const [, stage, step, holder, sha, resaved] = loaded!;
      expect(resaved).toBe(sha);
      const served = new RegExp(
        `<${holder}> .*served stage ${stage} of ${MODEL} at step ${step} to ${w4.peer}: \\d+ bytes, sha256 (\\w+)`,
      ).exec(text);
      expect(served?.[1], text).toBe(sha);

      // The loss curve across both failures and the join equals one process training the same spec.
      const losses = await oneProcessLosses(spec, END);
      let worst = 0;
      for (let s = 0; s < END; s++) {
        worst = Math.max(worst, Math.abs(train[s].value - losses[s]));
        expect(
          Math.abs(train[s].value - losses[s]),
          `step ${s}: swarm ${train[s].value} vs in-process ${losses[s]}`,
        ).toBeLessThan(1e-4);
      }
      console.log(
        `churn: ${rollbacks} rollback(s); newcomer fetched stage ${stage} at step ${step}; largest loss ` +
          `difference to one process ${worst.toExponential(2)}`,
      );
    },
  );
});
