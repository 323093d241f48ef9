import type { Links } from './links.ts';
import type { Store } from './store.ts';
import type { TeamRef } from './teams.ts';
import type { AssignmentRecord, ModelRecord, PeerRecord } from './types.ts';
import { stageCosts, stageCount } from '../train/run-derived.ts';
import type {
  Assignment,
  Bottleneck,
  ModelDetail,
  ModelSummary,
  StageView,
  Topology,
  TrainingState,
} from '../wire/index.ts';

/**
 * JSON shapes the API answers with, built from stored records. Capacities are in tokens/s: a peer's reference
 * tokens/s × reference FLOPs per token / the stage's FLOPs per token, summed over the stage's replicas.
 */

export type { StageView };

export function stageViews(store: Store, model: ModelRecord, referenceFlopsPerToken: number): StageView[] {
  const peers = new Map(store.listPeers('alive').map((p) => [p.peerId, p]));
  const byStage = new Map<number, AssignmentRecord[]>();
  for (const a of store.listAssignments(model.id)) byStage.set(a.stage, [...(byStage.get(a.stage) ?? []), a]);
  return stageCosts(model.spec).map((s) => {
    const list = (byStage.get(s.index) ?? []).map((a) => {
      const p = peers.get(a.peerId);
      return {
        peerId: a.peerId,
        replica: a.replica,
        kind: p?.kind ?? 'node',
        tokensPerSecond: p?.tokensPerSecond ?? 0,
        since: a.since,
      };
    });
    const speed = list.reduce((t, p) => t + p.tokensPerSecond, 0);
    return {
      index: s.index,
      firstLayer: s.firstLayer,
      endLayer: s.endLayer,
      hasEmbedding: s.hasEmbedding,
      hasHead: s.hasHead,
      flopsPerToken: s.flopsPerToken,
      tokensPerSecond: (speed * referenceFlopsPerToken) / s.flopsPerToken,
      peers: list,
    };
  });
}

/** The slowest stage (the pipeline's rate); null while some stage has no peer. */
function bottleneck(stages: StageView[]): Bottleneck | null {
  if (stages.some((s) => s.peers.length === 0)) return null;
  const slowest = stages.reduce((a, b) => (b.tokensPerSecond < a.tokensPerSecond ? b : a));
  return { stage: slowest.index, tokensPerSecond: slowest.tokensPerSecond };
}

/** The fields every model answer repeats from the RunSpec, for clients that predate it. */
function flat(model: ModelRecord) {
  const { spec } = model;
  return {
    id: model.id,
    name: model.name,
    codec: spec.codec.name,
    microBatches: spec.microBatches,
    batch: spec.batch,
    pricePer1kTokens: spec.pricePer1kTokens,
    createdAt: model.createdAt,
  };
}

/** Paused when some holder's heartbeat says the model waits for a stage; else training when every stage is held. */
function trainingState(stages: StageView[], waitingOf: (peerId: string) => number | undefined): TrainingState {
  const waiting = new Set<number>();
  for (const s of stages)
    for (const p of s.peers) {
      const w = waitingOf(p.peerId);
      if (w !== undefined) waiting.add(w);
    }
  const waitingFor = [...waiting].sort((a, b) => a - b);
  const covered = stages.every((s) => s.peers.length > 0);
  return { state: waitingFor.length ? 'paused' : covered ? 'training' : 'idle', waitingFor };
}

type WaitingOf = (peerId: string) => number | undefined;
const notWaiting: WaitingOf = () => undefined;

export function modelSummary(
  store: Store,
  model: ModelRecord,
  referenceFlopsPerToken: number,
  waitingOf = notWaiting,
): ModelSummary {
  const stages = stageViews(store, model, referenceFlopsPerToken);
  return {
    ...flat(model),
    spec: model.spec,
    stages: stages.length,
    peers: stages.reduce((t, s) => t + s.peers.length, 0),
    covered: stages.every((s) => s.peers.length > 0),
    training: trainingState(stages, waitingOf),
    bottleneck: bottleneck(stages),
  };
}

export function modelDetail(
  store: Store,
  model: ModelRecord,
  referenceFlopsPerToken: number,
  waitingOf = notWaiting,
): ModelDetail {
  const stages = stageViews(store, model, referenceFlopsPerToken);
  return {
    ...flat(model),
    spec: model.spec,
    config: model.spec.model,
    layout: model.spec.layout,
    covered: stages.every((s) => s.peers.length > 0),
    training: trainingState(stages, waitingOf),
    bottleneck: bottleneck(stages),
    steps: store.countSteps(model.id),
    stages,
  };
}

/**
 * What a peer needs to serve its stage: the stage, the model's RunSpec, who holds every stage, and who is handing
 * a stage of the model off before it leaves (`departing`: not in the pipeline any more, but still serving its
 * stage's state to the new holders).
 */
export function assignmentView(
  store: Store,
  a: AssignmentRecord,
  departing: Array<{ peerId: string; stage: number }> = [],
): Assignment {
  const model = store.getModel(a.modelId)!;
  const { spec } = model;
  const stage = stageCosts(model.spec)[a.stage];
  const pipeline = spec.layout.map((_, stage) => ({ stage, peers: [] as Array<{ peerId: string; replica: number }> }));
  for (const x of store.listAssignments(model.id))
    pipeline[x.stage]?.peers.push({ peerId: x.peerId, replica: x.replica });
  return {
    modelId: a.modelId,
    stage: a.stage,
    replica: a.replica,
    since: a.since,
    stages: stageCount(spec),
    firstLayer: stage.firstLayer,
    endLayer: stage.endLayer,
    hasEmbedding: stage.hasEmbedding,
    hasHead: stage.hasHead,
    spec,
    pipeline,
    departing,
  };
}

export function peerView(store: Store, p: PeerRecord, stats: Record<string, number> | undefined) {
  return {
    ...p,
    assignments: store
      .assignmentsOf(p.peerId)
      .map((a) => ({ modelId: a.modelId, stage: a.stage, replica: a.replica, since: a.since })),
    stats: stats ?? null,
  };
}

/** The Researcher page's diagram: stages × peers (kind, replica, speed, team), measured links, boundaries. */
export function topologyView(
  store: Store,
  model: ModelRecord,
  referenceFlopsPerToken: number,
  links: Links,
  teams: Map<string, TeamRef>,
): Topology {
  const stages = stageViews(store, model, referenceFlopsPerToken).map((s) => ({
    index: s.index,
    firstLayer: s.firstLayer,
    endLayer: s.endLayer,
    hasEmbedding: s.hasEmbedding,
    hasHead: s.hasHead,
    peers: s.peers.map((p) => ({
      peerId: p.peerId,
      replica: p.replica,
      kind: p.kind,
      tokensPerSecond: p.tokensPerSecond,
      team: teams.get(p.peerId)?.name ?? null,
    })),
  }));
  return {
    modelId: model.id,
    stages,
    links: links.linksOf(model.id),
    boundaries: links.boundaries(model.id, stageCount(model.spec), model.spec.model.dModel, model.spec.codec.name),
  };
}
