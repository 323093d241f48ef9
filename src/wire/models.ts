/**
 * Models as the coordinator's API answers them (GET /api/models, GET /api/models/:id, POST /api/models) and the
 * assignment a peer receives on join and heartbeat. Types only: the browser bundle imports these without any
 * server code.
 */
import type { ModelConfig } from '../model/config.ts';
import type { RunSpec } from '../train/run-spec.ts';

/** The slowest stage (the pipeline's rate in tokens/s); null while some stage has no peer. */
export interface Bottleneck {
  stage: number;
  tokensPerSecond: number;
}

/** Fields every model answer has. codec … pricePer1kTokens repeat the RunSpec's for clients that predate it. */
interface ModelBase {
  id: string;
  name: string;
  /** spec.codec.name */
  codec: string;
  /** spec.microBatches */
  microBatches: number;
  /** spec.batch */
  batch: number;
  /** spec.pricePer1kTokens */
  pricePer1kTokens: number;
  createdAt: number;
  covered: boolean;
  /** Whether the model trains now, and if not, why (see TrainingState). */
  training: TrainingState;
  bottleneck: Bottleneck | null;
}

/**
 * training: a pipeline is set up (every stage held). paused: its holders agreed the model cannot go on until a
 * peer holding `waitingFor`'s stages (live or as a snapshot) returns — it is never restarted from random weights.
 * idle: some stage has no peer assigned.
 */
export interface TrainingState {
  state: 'training' | 'paused' | 'idle';
  /** Paused: the stages it waits for (the lowest each holder reported). */
  waitingFor: number[];
}

/** An entry of GET /api/models. */
export interface ModelSummary extends ModelBase {
  spec: RunSpec;
  stages: number;
  peers: number;
}

/** A stage of GET /api/models/:id: its layers, its cost and who holds it. */
export interface StageView {
  index: number;
  firstLayer: number;
  endLayer: number;
  hasEmbedding: boolean;
  hasHead: boolean;
  /** Training FLOPs (forward + backward) per token at full context. */
  flopsPerToken: number;
  /** The stage's capacity: its replicas' speeds scaled to its cost. */
  tokensPerSecond: number;
  peers: Array<{ peerId: string; replica: number; kind: 'node' | 'browser'; tokensPerSecond: number; since: number }>;
}

/** GET /api/models/:id (and the answer to POST /api/models). */
export interface ModelDetail extends ModelBase {
  spec: RunSpec;
  /** spec.model */
  config: ModelConfig;
  /** spec.layout */
  layout: number[];
  steps: { running: number; done: number; failed: number };
  stages: StageView[];
}

/** POST /api/models with a whole RunSpec. */
export interface SpecModelProposal {
  id?: string;
  name: string;
  spec: RunSpec;
}

/**
 * POST /api/models with the flat fields the first API took: the coordinator builds the RunSpec, filling the
 * optimiser, data and seed (config.seed, else 1) from the software preset.
 */
export interface FlatModelProposal {
  id?: string;
  name: string;
  config: ModelConfig;
  layout: number[];
  codec: string;
  microBatches: number;
  batch: number;
  pricePer1kTokens: number;
}

/** The body of POST /api/models. */
export type ModelProposal = SpecModelProposal | FlatModelProposal;

export interface PipelinePeer {
  peerId: string;
  replica: number;
}

/** A peer's seat: its stage of a model, the model's RunSpec, and who holds every stage. */
export interface Assignment {
  modelId: string;
  stage: number;
  replica: number;
  /** When the peer took this seat. */
  since: number;
  stages: number;
  firstLayer: number;
  endLayer: number;
  hasEmbedding: boolean;
  hasHead: boolean;
  spec: RunSpec;
  pipeline: Array<{ stage: number; peers: PipelinePeer[] }>;
  /**
   * Peers handing a stage of this model off before they leave (POST /api/peers/leave with handoff): out of the
   * pipeline, still alive for up to 60 s, and serving their stage's state to its new holders. Absent from
   * coordinators that predate hand-offs.
   */
  departing?: Array<{ peerId: string; stage: number }>;
}

/** Where peers reach the coordinator's libp2p relay. */
export interface RelayInfo {
  multiaddrs: string[];
}

/** The answer to POST /api/peers/join and /api/peers/heartbeat. */
export type JoinAnswer =
  | { status: 'assigned'; peerId: string; heartbeatMs: number; relay: RelayInfo | null; assignment: Assignment }
  | {
      status: 'wait';
      peerId: string;
      heartbeatMs: number;
      relay: RelayInfo | null;
      reason: string;
      retryMs: number;
      /** Set while this peer hands its stage off (it left the pipeline with handoff: true). */
      handoff?: { modelId: string; stage: number; until: number };
    };

/**
 * The answer to POST /api/peers/leave. For a leave with `handoff: true`, `handoff` is the hand-off begun (or
 * already under way) — the stage, the deadline, and the peers now holding the stage — or null with the reason
 * when there is nothing to hand off. A plain leave answers neither.
 */
export interface LeaveAnswer {
  ok: true;
  peerId: string;
  handoff?: { modelId: string; stage: number; until: number; successors: string[] } | null;
  reason?: string;
}
