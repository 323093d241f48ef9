/** What a SwarmWorker is given, what it reports per step, and the swarm's audit fraction. */
import type { Libp2p } from 'libp2p';
import type { Gpu } from '../../gpu/index.ts';
import type { Corpus } from '../../train/recipe.ts';
import { secretCoin, type AuditOptions, type WorkContext, type WorkDone } from '../../train/work.ts';
import type { CoordinatorClient } from '../coordinator-client.ts';
import type { SnapshotStore } from '../snapshots.ts';

export interface SwarmWorkerOptions {
  gpu: Gpu;
  node: Libp2p;
  client: CoordinatorClient;
  relayAddr: string;
  kind: 'node' | 'browser';
  /** Measured training throughput of the coordinator's reference workload. */
  tokensPerSecond: number;
  loadCorpus: (vocab: number) => Promise<Corpus>;
  log?: (line: string) => void;
  /** Stop after this many steps of this worker (default: run until stop()). */
  maxSteps?: number;
  /**
   * Stop once the model stands at this step (absolute; every worker of a pipeline given the same value stops together).
   */
  untilStep?: number;
  /** A neighbour silent this long fails the step. */
  timeoutMs?: number;
  onStep?: (s: WorkerStep) => void;
  /**
   * Called the moment this worker has applied a step's update, before anything else of the step (loss report, onStep).
   */
  onUpdateApplied?: (step: number) => void;
  /**
   * Verification by recomputation (src/train/work.ts). Every worker of a swarm must use the same fraction:
   * default AUDIT_FRACTION with a fresh random secret coin per worker.
   */
  audit?: AuditOptions;
  /** Every unit of work done, with where it was done (a ReceiptReporter turns these into signed receipts). */
  onWork?: (w: WorkDone, c: WorkContext) => void;
  /** Fault injection (malicious-worker tests only): see RunnerOptions.corrupt. */
  corrupt?: (step: number, micro: number) => boolean;
  /** Share of the device's turns inference gets while training also waits, in [0, 1] (default 0.5; see GpuTurns). */
  inferencePriority?: number;
  /** GPU-use cap: share of wall time the device may compute, in (0, 1] (default 1). */
  dutyCycle?: number;
  /** Durable storage for stage snapshots (none: the model survives only while some holder keeps running). */
  snapshots?: SnapshotStore;
}

/** Share of forwards recomputed by a sibling replica in a swarm (its cost: about a third of that in extra compute). */
export const AUDIT_FRACTION = 0.1;

export function defaultAudit(): AuditOptions {
  return { fraction: AUDIT_FRACTION, coin: secretCoin(crypto.getRandomValues(new Uint8Array(32))) };
}

export interface WorkerStep {
  step: number;
  /** Mean loss of the step (last stage only). */
  loss?: number;
  ms: number;
  bytesSent: number;
  bytesReceived: number;
}
