/**
 * The reconfiguration step: after the coordinator changed the pipeline, this worker freezes what it holds,
 * meets the other workers of the new pipeline, agrees with them where to resume (src/net/resume.ts), takes its
 * stage (its own, rolled back if needed, fetched from a holder, or seeded) and sets up the round. The worker
 * then says it is ready and waits for the others (awaitReady on the returned rendezvous).
 */
import type { Libp2p } from 'libp2p';
import type { Assignment, CoordinatorClient } from '../coordinator-client.ts';
import { abortable, collectStatuses, connectAll, departingStatuses, short, type Rendezvous } from '../rendezvous.ts';
import { layoutKey, planResume, type MemberView } from '../resume.ts';
import type { Resume, SyncStatus } from '../swarm-sync.ts';
import type { Holdings } from './holdings.ts';
import type { PhaseDriver } from './phase-driver.ts';
import { Roster, specOf } from './roster.ts';
import { openRound, type Round, type RoundDeps } from './round.ts';
import { specHash } from '../snapshots.ts';
import { fetchHeld, fromSnapshot, seeded } from './stage-source.ts';

export interface ReconfigureDeps extends RoundDeps {
  node: Libp2p;
  relayAddr: string;
  client: CoordinatorClient;
  peerId: string;
  holdings: Holdings;
  phases: PhaseDriver;
  /** The stages the model waits for (none: it is not waiting), as the agreement found. */
  onWaiting?: (stages: number[]) => void;
}

/**
 * Steps the coordinator has recorded for the model (done or failed; reports are contiguous by construction).
 * Through a coordinator outage this waits (backing off) until it answers: without the count no resume can be agreed.
 */
async function reportedSteps(client: CoordinatorClient, modelId: string, signal: AbortSignal): Promise<number> {
  const { model } = await client.untilAnswered(() => client.model(modelId), { signal });
  signal.throwIfAborted();
  return model.steps.done + model.steps.failed;
}

/** Runs from the `freezing` phase to a round set up for the agreed resume; the stage-lost case never returns. */
export async function reconfigure(
  d: ReconfigureDeps,
  a: Assignment,
  signal: AbortSignal,
): Promise<{ round: Round; rendezvous: Rendezvous }> {
  const layout = layoutKey(a);
  const lastRound = d.phases.state.round;
  d.holdings.forModel(a.modelId, await specHash(a.spec));
  const reported = await reportedSteps(d.client, a.modelId, signal);
  await d.holdings.freeze(reported, d.log);
  d.phases.advance({ type: 'frozen' }, signal);
  const spec = specOf(a);
  const roster = new Roster(a);
  const seat = roster.seatOf(d.peerId);
  if (!seat) throw new Error(`assignment for ${a.modelId} does not list this peer`);
  const members = roster.peers.filter((p) => p !== d.peerId);
  const holding = d.holdings.announced.held;
  const holdingText = holding
    .map((h) => `stage ${h.stage}@${h.step}${h.stored ? ' (snapshot)' : h.backup ? '+backup' : ''}`)
    .join(', ');
  d.log(
    `stage ${a.stage} (replica ${seat.replica}) of ${a.modelId}: layers ${a.firstLayer}–${a.endLayer - 1}, ` +
      `${a.stages} stages, replicas [${roster.replicas}], codec ${a.spec.codec.name}; ` +
      `holding ${holdingText || 'nothing'}`,
  );
  const rendezvous: Rendezvous = {
    node: d.node,
    relayAddr: d.relayAddr,
    self: d.peerId,
    members,
    layout,
    signal,
    log: d.log,
  };
  await connectAll(rendezvous);

  const found = await collectStatuses(rendezvous, a.modelId, lastRound);
  // Peers handing off a stage they held: their states count as sources (not as members: nobody waits for them).
  const departing = (a.departing ?? []).map((x) => x.peerId).filter((p) => p !== d.peerId && !members.includes(p));
  const handing: Map<string, SyncStatus> = departing.length
    ? await departingStatuses(rendezvous, a.modelId, lastRound, departing)
    : new Map();
  if (handing.size) d.log(`departing holder(s) ${[...handing.keys()].map(short).join(', ')} reached`);
  let resume: Resume;
  let sources: string[];
  if (found.adopt) {
    resume = found.adopt;
    sources = [...found.statuses, ...handing]
      .filter(([, st]) => st.held.some((h) => h.stage === a.stage))
      .map(([p]) => p)
      .sort();
    d.log(`resuming as the others decided: step ${resume.step}, round ${resume.round}`);
  } else {
    const views: MemberView[] = [...found.statuses].map(([peerId, status]) => ({
      peerId,
      stage: roster.seatOf(peerId)!.stage,
      status,
    }));
    // A departing holder has no seat: its states count, it is assigned nothing.
    for (const [peerId, status] of handing) views.push({ peerId, stage: -1, status });
    views.push({ peerId: d.peerId, stage: a.stage, status: { held: holding, reported, round: lastRound } });
    const plan = planResume(views, a.stages, a.spec.snapshotEvery);
    if (plan.kind === 'lost') {
      d.log(
        `PAUSED — waiting for stage ${plan.stages.join(', ')}: ${plan.reason}. Model ${a.modelId} resumes by ` +
          `itself when a peer holding ${plan.stages.length > 1 ? 'those stages' : 'that stage'} (live or as a ` +
          `snapshot) at a matching step joins`,
      );
      d.onWaiting?.(plan.stages);
      d.phases.advance({ type: 'stage-lost' }, signal);
      return abortable(new Promise<never>(() => {}), signal);
    }
    resume = { step: plan.step, round: plan.round, fresh: plan.fresh };
    sources = plan.sources.get(a.stage) ?? [];
    d.log(
      `resume at step ${resume.step}, round ` +
        `${resume.round}${plan.fresh ? ' (no peer holds this model: seeded initialisation)' : ''}`,
    );
  }

  d.onWaiting?.([]);
  d.holdings.bringTo(resume.step, d.log);
  let held = d.holdings.find(a.stage);
  if (!held) {
    const own = resume.fresh ? undefined : await d.holdings.snapshot(a.stage, resume.step, d.log);
    held = resume.fresh
      ? seeded(d.gpu, a.spec, spec, resume.step)
      : own
        ? await fromSnapshot(d, a, spec, resume.step, own)
        : await fetchHeld(
            d,
            a,
            spec,
            resume.step,
            sources.filter((p) => p !== d.peerId),
            signal,
          );
    d.holdings.add(held);
  }
  const round = await openRound(d, { assignment: a, layout, spec: a.spec, resume, seat, roster, held }, signal);
  return { round, rendezvous };
}
