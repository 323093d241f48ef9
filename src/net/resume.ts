/**
 * Where a pipeline resumes after the coordinator changed it (a peer vanished, joined or moved). Pure: every
 * worker of the new pipeline runs it on the same statuses (each frozen when its worker paused) and gets the
 * same answer.
 *
 * Why a rule is needed. In a synchronous step every stage applies its update only after the cross-stage norm
 * exchange, and replicas only after their all-reduce, so survivors of a failure stand at most one step apart:
 * a failure between two workers' updates leaves one at k + 1 and the other at k. Every worker keeps the state
 * from before its last update (HeldStage.snapshot), so a worker at k + 1 can go back to k, never further.
 *
 * The rule. A holder of stage s at step p can stand at p, or at p − 1 if it kept its backup. For the last stage
 * one more bound: it may not stand beyond `reported`, the steps the coordinator had recorded when that holder
 * paused, so a step whose loss never reached the coordinator (its reporter died) is recomputed instead of
 * skipped. The pipeline resumes at R = the largest step every stage can stand at (some holder of each stage
 * reaches it). Holders that stand beyond R roll back; holders that cannot reach R (a peer that was cut off and
 * came back with old weights) drop their state and fetch it like a newcomer. No step is then applied twice (a
 * rolled-back update is undone before the step is recomputed, which gives the same update: same weights, same
 * batches, deterministic kernels) and none is lost (R never exceeds what every stage applied).
 *
 * Durable snapshots (src/net/snapshots.ts) are held states too: every holder writes its stage at the same
 * steps (multiples of `snapshotEvery`), so a stage whose GPU holders all stopped — a restart of everything, every
 * worker SIGKILLed — can still stand at those steps, and R is then the newest step for which every stage has a
 * snapshot (or a live state) somewhere. A snapshot reaches exactly its step; GPU states are preferred as sources.
 *
 * A stage with no holder and no snapshot among the new pipeline's peers has lost its weights: the pipeline cannot
 * resume and waits, paused (a peer holding that stage, or its snapshot, may still come back). The seeded
 * initialisation is the state at step 0 of every stage, so it is used only while nothing else can be: no peer
 * holds any state of the model and the coordinator recorded fewer than `snapshotEvery` steps (no snapshot could
 * exist yet, so recomputing from step 0 loses nothing). A model that stepped further is never trained from
 * random weights again.
 */
import type { Assignment } from './coordinator-client.ts';
import type { HeldInfo, SyncStatus } from './swarm-sync.ts';

export interface MemberView {
  peerId: string;
  /** The stage this peer is assigned in the new layout. */
  stage: number;
  status: Pick<SyncStatus, 'held' | 'reported' | 'round'>;
}

export type ResumePlan =
  | {
      kind: 'resume';
      /** Training step every stage stands at before the pipeline goes on. */
      step: number;
      /** Round of the new configuration (frames are tagged with it, so nothing from an earlier one is taken). */
      round: number;
      /** No peer held any state: every stage starts from the seeded initialisation (step 0). */
      fresh: boolean;
      /** Per stage: peers holding it at (or able to roll back to) `step`, best first. */
      sources: Map<number, string[]>;
    }
  | { kind: 'lost'; stages: number[]; round: number; reason: string };

/**
 * Steps a held state can stand at: its step, one back if it kept the backup (a snapshot: its step only), the last
 * stage capped by `reported`.
 */
export function reachable(h: HeldInfo, stages: number, reported: number): number[] {
  const steps = h.backup && !h.stored && h.step > 0 ? [h.step, h.step - 1] : [h.step];
  return h.stage === stages - 1 ? steps.filter((s) => s <= reported) : steps;
}

export function planResume(members: readonly MemberView[], stages: number, snapshotEvery: number): ResumePlan {
  const round = Math.max(0, ...members.map((m) => m.status.round)) + 1;
  const holders: Array<{ peerId: string; stage: number; reach: number[]; exact: number; stored: boolean }> = [];
  for (const m of members) {
    for (const h of m.status.held) {
      if (h.stage < stages)
        holders.push({
          peerId: m.peerId,
          stage: h.stage,
          reach: reachable(h, stages, m.status.reported),
          exact: h.step,
          stored: h.stored === true,
        });
    }
  }
  if (holders.length === 0) {
    const recorded = Math.max(0, ...members.map((m) => m.status.reported));
    if (recorded < snapshotEvery) return { kind: 'resume', step: 0, round, fresh: true, sources: new Map() };
    const all = Array.from({ length: stages }, (_, s) => s);
    return {
      kind: 'lost',
      stages: all,
      round,
      reason:
        `no peer of the new pipeline holds any stage of this model or a snapshot of it, and it has trained ` +
        `${recorded} steps: it waits for the holders of its snapshots instead of starting again from random weights`,
    };
  }
  const perStage = Array.from(
    { length: stages },
    (_, s) => new Set(holders.filter((h) => h.stage === s).flatMap((h) => h.reach)),
  );
  const missing = perStage.flatMap((_set, s) => (holders.some((h) => h.stage === s) ? [] : [s]));
  if (missing.length) {
    return {
      kind: 'lost',
      stages: missing,
      round,
      reason:
        `no peer of the new pipeline holds stage${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ` +
        `or a snapshot of it: its last holder left and no replica held it`,
    };
  }
  const common = [...perStage[0]].filter((step) => perStage.every((set) => set.has(step)));
  if (common.length === 0) {
    const what = perStage
      .map((set, s) => `stage ${s} at ${[...set].sort((a, b) => a - b).join('/') || 'nothing reportable'}`)
      .join(', ');
    const behind = perStage.map((set, s) => ({ s, top: Math.max(-1, ...set) })).sort((a, b) => a.top - b.top)[0].s;
    return {
      kind: 'lost',
      stages: [behind],
      round,
      reason: `the stages' states cannot be brought to one step (${what})`,
    };
  }
  const step = Math.max(...common);
  const sources = new Map<number, string[]>();
  for (let s = 0; s < stages; s++) {
    const ok = holders.filter((h) => h.stage === s && h.reach.includes(step));
    // Live states already at the step first (nothing to undo), then live ones to roll back, then snapshots, then
    // by peer id so every asker tries them in one order.
    const rank = (h: (typeof ok)[number]) => (h.stored ? 2 : h.exact === step ? 0 : 1);
    ok.sort((a, b) => rank(a) - rank(b) || (a.peerId < b.peerId ? -1 : 1));
    sources.set(s, [...new Set(ok.map((h) => h.peerId))]);
  }
  return { kind: 'resume', step, round, fresh: false, sources };
}

/**
 * Every worker of one pipeline derives the same key from its assignment: model, stage count and each stage's peers in
 * replica order.
 */
export function layoutKey(a: Pick<Assignment, 'modelId' | 'stages' | 'pipeline'>): string {
  const stages = [...a.pipeline]
    .sort((x, y) => x.stage - y.stage)
    .map((st) => [st.stage, [...st.peers].sort((x, y) => x.replica - y.replica).map((p) => p.peerId)]);
  return JSON.stringify([a.modelId, a.stages, stages]);
}
