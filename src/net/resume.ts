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
 * A stage with no holder among the new pipeline's peers has lost its weights (its last holder vanished and it
 * had no replica): the pipeline cannot resume and waits (a peer holding that stage may still come back, e.g.
 * after a network cut). Only when no peer holds any stage of the model (a fresh swarm, or every holder left)
 * does it start from the seeded initialisation, at the step the coordinator has recorded.
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
      /** No peer held any state: every stage starts from the seeded initialisation at `step`. */
      fresh: boolean;
      /** Per stage: peers holding it at (or able to roll back to) `step`, best first. */
      sources: Map<number, string[]>;
    }
  | { kind: 'lost'; stages: number[]; round: number; reason: string };

/** Steps a held state can stand at: its step, one back if it kept the backup, the last stage capped by `reported`. */
export function reachable(h: HeldInfo, stages: number, reported: number): number[] {
  const steps = h.backup && h.step > 0 ? [h.step, h.step - 1] : [h.step];
  return h.stage === stages - 1 ? steps.filter((s) => s <= reported) : steps;
}

export function planResume(members: readonly MemberView[], stages: number): ResumePlan {
  const round = Math.max(0, ...members.map((m) => m.status.round)) + 1;
  const holders: Array<{ peerId: string; stage: number; reach: number[]; exact: number }> = [];
  for (const m of members) {
    for (const h of m.status.held) {
      if (h.stage < stages)
        holders.push({
          peerId: m.peerId,
          stage: h.stage,
          reach: reachable(h, stages, m.status.reported),
          exact: h.step,
        });
    }
  }
  if (holders.length === 0) {
    const step = Math.max(0, ...members.map((m) => m.status.reported));
    return { kind: 'resume', step, round, fresh: true, sources: new Map() };
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
        `no peer of the new pipeline holds stage${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: ` +
        `its last holder left and no replica held it`,
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
    // Holders already at the step first (nothing to undo), then by peer id so every asker tries them in one order.
    ok.sort((a, b) => Number(b.exact === step) - Number(a.exact === step) || (a.peerId < b.peerId ? -1 : 1));
    sources.set(
      s,
      ok.map((h) => h.peerId),
    );
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
