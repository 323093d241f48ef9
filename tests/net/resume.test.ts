import { describe, expect, it } from 'vitest';
import { layoutKey, planResume, reachable, type MemberView } from '../../src/net/resume.ts';
import type { HeldInfo } from '../../src/net/swarm-sync.ts';

/** A member of a 2-stage pipeline: assigned `stage`, holding `held`, having seen `reported` steps recorded. */
const member = (peerId: string, stage: number, held: HeldInfo[], reported = 100, round = 1): MemberView => ({
  peerId,
  stage,
  status: { held, reported, round },
});
const at = (stage: number, step: number, backup = true): HeldInfo => ({ stage, step, backup });
/** A snapshot on durable storage. */
const stored = (stage: number, step: number): HeldInfo => ({ stage, step, backup: false, stored: true });
const EVERY = 10;

describe('planResume', () => {
  it('starts from the seed only a model that never passed a snapshot step; never resets one that trained', () => {
    const plan = planResume([member('a', 0, [], 0, 0), member('b', 1, [], 0, 0)], 2, EVERY);
    expect(plan).toEqual({ kind: 'resume', step: 0, round: 1, fresh: true, sources: new Map() });
    // Every holder gone before the first snapshot: the seed is the state at step 0, the 7 steps are recomputed.
    const early = planResume([member('a', 0, [], 7, 3), member('b', 1, [], 7, 2)], 2, EVERY);
    expect(early).toMatchObject({ kind: 'resume', step: 0, round: 4, fresh: true });
    // Every holder gone after it: paused, waiting for every stage, not trained again from random weights.
    const later = planResume([member('a', 0, [], 40, 3), member('b', 1, [], 41, 2)], 2, EVERY);
    expect(later).toMatchObject({ kind: 'lost', stages: [0, 1], round: 4 });
    if (later.kind === 'lost') expect(later.reason).toMatch(/instead of starting again from random weights/);
  });

  it('resumes from the newest step every stage has a snapshot of, preferring live states as sources', () => {
    // Everyone restarted: only snapshots are left, stage 1's newest write (step 30) was cut short.
    const plan = planResume(
      [
        member('a', 0, [stored(0, 30), stored(0, 20), stored(0, 10)], 33),
        member('b', 1, [stored(1, 20), stored(1, 10)], 33),
      ],
      2,
      EVERY,
    );
    expect(plan).toMatchObject({ kind: 'resume', step: 20, fresh: false });
    if (plan.kind !== 'resume') throw new Error('unreachable');
    expect(plan.sources.get(0)).toEqual(['a']);
    // A live holder at the step is asked before a peer that only has the snapshot.
    const mixed = planResume(
      [member('z', 0, [stored(0, 20)], 21), member('y', 0, [at(0, 20)], 21), member('b', 1, [stored(1, 20)], 21)],
      2,
      EVERY,
    );
    if (mixed.kind !== 'resume') throw new Error('unreachable');
    expect(mixed.sources.get(0)).toEqual(['y', 'z']);
    // A snapshot reaches exactly its step (no backup behind it), and the last stage's is capped by what was recorded.
    expect(reachable(stored(1, 20), 2, 100)).toEqual([20]);
    expect(reachable(stored(1, 20), 2, 19)).toEqual([]);
  });

  it('waits for the stage whose snapshot is nowhere, naming it', () => {
    const plan = planResume([member('a', 0, [stored(0, 20)], 25), member('b', 1, [], 25)], 2, EVERY);
    expect(plan).toMatchObject({ kind: 'lost', stages: [1] });
  });

  it('goes on at k + 1 when every stage applied step k', () => {
    const plan = planResume([member('a', 0, [at(0, 8)], 8), member('c', 1, [at(1, 8)], 8)], 2, EVERY);
    expect(plan).toMatchObject({ kind: 'resume', step: 8, fresh: false });
  });

  it('rolls the stage that applied step k back when another did not (failure between their updates)', () => {
    // Stage 0 applied step 7 (stands at 8, kept the state of 7); stage 1's surviving replica did not.
    const plan = planResume([member('a', 0, [at(0, 8)], 7), member('c', 1, [at(1, 7)], 7)], 2, EVERY);
    expect(plan).toMatchObject({ kind: 'resume', step: 7 });
    if (plan.kind !== 'resume') throw new Error('unreachable');
    expect(plan.sources.get(0)).toEqual(['a']);
    expect(plan.sources.get(1)).toEqual(['c']);
  });

  it('recomputes a step whose loss never reached the coordinator (its reporter died after the update)', () => {
    // Both stages applied step 7, but the coordinator holds only steps 0–6: step 7 is redone, not skipped.
    const plan = planResume([member('a', 0, [at(0, 8)], 7), member('c', 1, [at(1, 8)], 7)], 2, EVERY);
    expect(plan).toMatchObject({ kind: 'resume', step: 7 });
    // Once it was recorded, nothing is redone.
    expect(planResume([member('a', 0, [at(0, 8)], 8), member('c', 1, [at(1, 8)], 8)], 2, EVERY)).toMatchObject({
      step: 8,
    });
  });

  it('never goes back more than the one update a backup can undo', () => {
    expect(reachable(at(0, 8), 2, 100)).toEqual([8, 7]);
    expect(reachable(at(0, 8, false), 2, 100)).toEqual([8]);
    expect(reachable(at(1, 8), 2, 7)).toEqual([7]);
    expect(reachable(at(1, 8), 2, 6)).toEqual([]);
    // A last stage that can neither stand at the recorded step nor go back to it blocks the pipeline.
    const plan = planResume([member('a', 0, [at(0, 9)], 7), member('c', 1, [at(1, 9)], 7)], 2, EVERY);
    expect(plan.kind).toBe('lost');
  });

  it(
    'lets a peer that was cut off and came back with old weights fetch fresh ones instead of dragging ' +
      'everyone back',
    () => {
      const plan = planResume(
        [member('a', 0, [at(0, 20)], 20), member('old', 1, [at(1, 5)], 20), member('c', 1, [at(1, 20)], 20)],
        2,
        EVERY,
      );
      expect(plan).toMatchObject({ kind: 'resume', step: 20 });
      if (plan.kind !== 'resume') throw new Error('unreachable');
      expect(plan.sources.get(1)).toEqual(['c']);
    },
  );

  it('says a stage is lost when no peer of the new pipeline holds it', () => {
    // Stage 0's only holder vanished; the coordinator moved a replica of stage 1 there (it holds stage 1, not 0).
    const plan = planResume([member('b', 0, [at(1, 12)], 12), member('c', 1, [at(1, 12)], 12)], 2, EVERY);
    expect(plan).toMatchObject({ kind: 'lost', stages: [0] });
    if (plan.kind === 'lost') expect(plan.reason).toMatch(/no peer of the new pipeline holds stage 0/);
  });

  it('says so when the only holder of a stage is too far behind the others', () => {
    const plan = planResume([member('a', 0, [at(0, 20)], 20), member('old', 1, [at(1, 5)], 20)], 2, EVERY);
    expect(plan).toMatchObject({ kind: 'lost', stages: [1] });
  });

  it('counts a moved peer as a source of the stage it left, and prefers holders that need no rollback', () => {
    // b moved from stage 1 to stage 0 and c from 0 to 1 (a swap): each fetches from the other.
    const plan = planResume(
      [member('b', 0, [at(1, 9)], 9), member('c', 1, [at(0, 9, false)], 9), member('d', 1, [at(1, 10)], 9)],
      2,
      EVERY,
    );
    expect(plan).toMatchObject({ kind: 'resume', step: 9 });
    if (plan.kind !== 'resume') throw new Error('unreachable');
    expect(plan.sources.get(0)).toEqual(['c']);
    expect(plan.sources.get(1)).toEqual(['b', 'd']);
  });

  it('numbers the new round past every round any member was in', () => {
    const plan = planResume([member('a', 0, [at(0, 3)], 3, 5), member('c', 1, [at(1, 3)], 3, 2)], 2, EVERY);
    expect(plan).toMatchObject({ round: 6 });
  });
});

describe('layoutKey', () => {
  const base = {
    modelId: 'm',
    stages: 2,
    pipeline: [
      {
        stage: 1,
        peers: [
          { peerId: 'c', replica: 3 },
          { peerId: 'b', replica: 0 },
        ],
      },
      { stage: 0, peers: [{ peerId: 'a', replica: 0 }] },
    ],
  };
  it('is the same for every listing order and changes with membership or replica order', () => {
    const reordered = {
      ...base,
      pipeline: [...base.pipeline].reverse().map((s) => ({ ...s, peers: [...s.peers].reverse() })),
    };
    expect(layoutKey(reordered)).toBe(layoutKey(base));
    const without = {
      ...base,
      pipeline: [base.pipeline[0], { stage: 0, peers: [{ peerId: 'a', replica: 0 }] }].map((s) =>
        s.stage === 1 ? { ...s, peers: [s.peers[1]] } : s,
      ),
    };
    expect(layoutKey(without)).not.toBe(layoutKey(base));
    const swapped = {
      ...base,
      pipeline: [
        {
          stage: 1,
          peers: [
            { peerId: 'c', replica: 0 },
            { peerId: 'b', replica: 1 },
          ],
        },
        base.pipeline[1],
      ],
    };
    expect(layoutKey(swapped)).not.toBe(layoutKey(base));
  });
});
