import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Membership } from '../../src/coordinator/membership.ts';
import { Store } from '../../src/coordinator/store.ts';
import { memoryLog, tempDir, tinyModel } from './fixtures.ts';

describe('membership: heartbeats, gone peers, rejoin', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: Store;
  let clock: number;
  let members: Membership;
  const H = 1000;

  beforeEach(() => {
    tmp = tempDir();
    store = Store.open(join(tmp.dir, 'm.db'));
    store.insertModel(tinyModel('m', [2, 1, 1]));
    clock = 0;
    members = new Membership({ store, heartbeatMs: H, now: () => clock, log: memoryLog().log });
  });
  afterEach(() => {
    members.stop();
    store.close();
    tmp.cleanup();
  });

  const join4 = () => {
    for (const [peerId, tps] of [
      ['a', 100],
      ['b', 60],
      ['c', 40],
      ['d', 30],
    ] as const) {
      members.join({ peerId, kind: 'node', tokensPerSecond: tps, preferModel: null });
    }
  };
  const stagesCovered = () => new Set(store.listAssignments('m').map((a) => a.stage)).size;
  const stageOf = (peerId: string) => store.assignmentsOf(peerId)[0]?.stage;

  it('joined peers cover every stage; each holds one', () => {
    join4();
    expect(stagesCovered()).toBe(3);
    expect(store.listAssignments('m')).toHaveLength(4);
    expect(
      store
        .listEvents()
        .filter((e) => e.kind === 'join')
        .map((e) => e.detail.peerId),
    ).toEqual(['a', 'b', 'c', 'd']);
  });

  it('a peer silent for more than 3 heartbeats is gone, logged, and its stage taken over', () => {
    join4();
    // The victim: a peer alone on its stage (so the stage must be covered by someone else).
    const lonely = store
      .listAssignments('m')
      .find((a) => store.listAssignments('m').filter((b) => b.stage === a.stage).length === 1)!;
    const others = ['a', 'b', 'c', 'd'].filter((p) => p !== lonely.peerId);
    clock = 2000;
    for (const p of others) members.heartbeat(p);
    clock = 3000; // exactly 3 heartbeats of silence: not yet
    expect(members.sweep()).toEqual([]);
    clock = 3001;
    expect(members.sweep()).toEqual([lonely.peerId]);
    expect(store.getPeer(lonely.peerId)!.status).toBe('gone');
    expect(store.assignmentsOf(lonely.peerId)).toEqual([]);
    expect(stagesCovered()).toBe(3);
    const events = store.listEvents();
    expect(events.find((e) => e.kind === 'gone')!.detail).toEqual({ peerId: lonely.peerId, silentMs: 3001 });
    const covered = events.filter((e) => e.kind === 'assign' && e.detail.reason === 'cover');
    expect(covered).toHaveLength(1);
    expect(stageOf(covered[0].detail.peerId as string)).toBeDefined();
    // Later sweeps find nobody new.
    clock = 3500;
    expect(members.sweep()).toEqual([]);
  });

  it('a gone peer must rejoin; rejoining under the same id resumes it (same joined_at, a stage again)', () => {
    join4();
    clock = 10_000;
    for (const p of ['a', 'b', 'c']) members.heartbeat(p);
    clock = 13_500;
    members.sweep();
    expect(store.getPeer('d')!.status).toBe('gone');
    expect(() => members.heartbeat('d')).toThrow(
      expect.objectContaining({ name: 'HttpError', status: 409, code: 'conflict' }),
    );
    expect(() => members.heartbeat('never-joined')).toThrow(
      expect.objectContaining({ name: 'HttpError', status: 404, code: 'not-found' }),
    );
    members.join({ peerId: 'd', kind: 'node', tokensPerSecond: 30, preferModel: null });
    expect(store.getPeer('d')).toMatchObject({ status: 'alive', joinedAt: 0, lastSeen: 13_500 });
    expect(stageOf('d')).toBeDefined();
    expect(
      store
        .listEvents()
        .filter((e) => e.kind === 'rejoin')
        .map((e) => e.detail.peerId),
    ).toEqual(['d']);
    expect(members.heartbeat('d').status).toBe('alive');
  });

  it('after an outage every peer was swept: rejoining, in any order, each takes its own seat back', () => {
    join4();
    const seats = () =>
      store
        .listAssignments('m')
        .map((a) => `${a.peerId}@${a.stage}.${a.replica}`)
        .sort();
    const before = seats();
    clock = 10_000; // nobody heard from for 10 s: all four are gone, nothing is assigned
    expect(members.sweep().sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(store.listAssignments('m')).toEqual([]);
    // They come back in the reverse order; without their seats remembered, the first would take stage 0.
    for (const [peerId, tps] of [
      ['d', 30],
      ['c', 40],
      ['b', 60],
      ['a', 100],
    ] as const)
      members.join({ peerId, kind: 'node', tokensPerSecond: tps, preferModel: null });
    expect(seats()).toEqual(before);
    const rejoins = store.listEvents().filter((e) => e.kind === 'rejoin');
    expect(rejoins.map((e) => e.detail.restored)).toHaveLength(4);
    expect(rejoins.every((e) => Array.isArray(e.detail.restored))).toBe(true);
  });

  it('one swept peer that never comes back: after 3 heartbeats the others are rebalanced to cover its stage', () => {
    join4();
    const lost = store.assignmentsOf('a')[0].stage;
    clock = 10_000;
    members.sweep();
    for (const [peerId, tps] of [
      ['b', 60],
      ['c', 40],
      ['d', 30],
    ] as const)
      members.join({ peerId, kind: 'node', tokensPerSecond: tps, preferModel: null });
    expect(stagesCovered()).toBe(2); // held back for a
    clock = 12_000;
    for (const p of ['b', 'c', 'd']) members.heartbeat(p);
    members.sweep();
    expect(stagesCovered()).toBe(2);
    clock = 13_000;
    for (const p of ['b', 'c', 'd']) members.heartbeat(p);
    members.sweep();
    expect(stagesCovered()).toBe(3);
    expect(store.listAssignments('m').some((x) => x.stage === lost)).toBe(true);
  });

  it('a swept peer does not take back a seat someone else took meanwhile, and a peer that left gets none', () => {
    members.join({ peerId: 'a', kind: 'node', tokensPerSecond: 100, preferModel: null });
    const seat = store.assignmentsOf('a')[0];
    clock = 5000;
    members.sweep();
    members.join({ peerId: 'n', kind: 'node', tokensPerSecond: 100, preferModel: null });
    const newcomer = store.assignmentsOf('n')[0];
    expect([newcomer.stage, newcomer.replica]).toEqual([seat.stage, seat.replica]);
    members.join({ peerId: 'a', kind: 'node', tokensPerSecond: 100, preferModel: null });
    expect(store.assignmentsOf('n')[0]).toMatchObject({ stage: seat.stage, replica: seat.replica });
    expect(store.listEvents().find((e) => e.kind === 'rejoin')!.detail.restored).toBeUndefined();
    // Leaving on purpose forgets the seat: a later join is placed like anyone's.
    members.leave('a');
    members.leave('n');
    members.join({ peerId: 'a', kind: 'node', tokensPerSecond: 100, preferModel: null });
    expect(store.listEvents().filter((e) => e.kind === 'rejoin')[1].detail.restored).toBeUndefined();
  });

  it('leave frees the stage at once; leaving twice is harmless', () => {
    join4();
    const stage = stageOf('a');
    members.leave('a');
    members.leave('a');
    expect(store.getPeer('a')!.status).toBe('gone');
    expect(stagesCovered()).toBe(3);
    expect(store.listAssignments('m').some((x) => x.stage === stage)).toBe(true);
    expect(store.listEvents().filter((e) => e.kind === 'leave')).toHaveLength(1);
    expect(() => members.leave('zz')).toThrow(
      expect.objectContaining({ name: 'HttpError', status: 404, code: 'not-found' }),
    );
  });

  it('stores a new throughput only when it moved by more than 10%', () => {
    join4();
    members.heartbeat('a', 105);
    expect(store.getPeer('a')!.tokensPerSecond).toBe(100);
    members.heartbeat('a', 300);
    expect(store.getPeer('a')!.tokensPerSecond).toBe(300);
  });

  it('silence while the coordinator was down or stalled does not count: 3 heartbeats from start or stall', async () => {
    // Heartbeats every 100 ms (sweeps every 50 ms of real time) on our clock, which jumps where we say.
    const m = new Membership({ store, heartbeatMs: 100, now: () => clock, log: memoryLog().log });
    const at = async (t: number) => {
      clock = t;
      await new Promise((r) => setTimeout(r, 120)); // a sweep or two at that time
      return store.getPeer('x')!.status;
    };
    m.join({ peerId: 'x', kind: 'node', tokensPerSecond: 5, preferModel: null });
    try {
      // A restart 10 s after x's last heartbeat: x has 3 heartbeats (300 ms) from the start to be heard.
      clock = 10_000;
      m.start();
      expect(await at(10_000)).toBe('alive');
      expect(await at(10_150)).toBe('alive');
      expect(await at(10_290)).toBe('alive');
      m.heartbeat('x');
      // The sweeping timer fires ~10 s late (this process was stuck): x's heartbeats may be waiting unread.
      expect(await at(20_000)).toBe('alive');
      expect(await at(20_150)).toBe('alive');
      expect(await at(20_290)).toBe('alive');
      expect(await at(20_301)).toBe('gone');
    } finally {
      m.stop();
    }
    expect(store.listEvents().find((e) => e.kind === 'gone')!.detail.silentMs).toBe(20_301 - 10_290);
  });

  it('with real timers, a short heartbeat notices a silent peer within a few periods', async () => {
    const live = new Membership({ store, heartbeatMs: 20, log: memoryLog().log });
    live.join({ peerId: 'x', kind: 'browser', tokensPerSecond: 5, preferModel: null });
    live.join({ peerId: 'y', kind: 'node', tokensPerSecond: 5, preferModel: null });
    live.join({ peerId: 'z', kind: 'node', tokensPerSecond: 5, preferModel: null });
    live.start();
    const t0 = Date.now();
    const beat = setInterval(() => {
      live.heartbeat('y');
      live.heartbeat('z');
    }, 10);
    try {
      while (store.getPeer('x')!.status === 'alive' && Date.now() - t0 < 2000)
        await new Promise((r) => setTimeout(r, 5));
    } finally {
      clearInterval(beat);
      live.stop();
    }
    expect(store.getPeer('x')!.status).toBe('gone');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(store.getPeer('y')!.status).toBe('alive');
    expect(stagesCovered()).toBe(2); // two peers left for three stages: the model waits, nobody is double-booked
    expect(new Set(store.listAssignments('m').map((a) => a.peerId)).size).toBe(2);
  });
});
