import type { Codec } from '../compress/codec.ts';
import type { GpuTurns } from '../gpu/gpu-turns.ts';
import type { Stage } from '../model/stage.ts';
import type { AdamWConfig } from '../ops/adamw.ts';
import { StageRun } from './stage-run.ts';
import { StageUpdate, type Turn } from './stage-update.ts';
import { workerId, type Transport } from './transport.ts';
import type { AuditOptions, WorkDone } from './work.ts';

export { NonFiniteTensorError } from './frame-body.ts';
export { microId } from './stage-run.ts';
export { workerId };

/**
 * One pipeline worker: a stage (one replica of it) running its part of the 1F1B schedule over a Transport.
 * Everything it needs from the other workers arrives as frames — activations, gradients, replica gradients
 * for the all-reduce, other stages' gradient norms — so the same runner trains in one process (the Pipeline
 * composes N of them over the in-memory network) or alone in a tab or a Node worker over libp2p. A run's
 * operations are in stage-run.ts, the update with its all-reduce and norm exchange in stage-update.ts, the
 * kinds of frame in frame-kinds.ts.
 */

/** One micro-batch of data: any peer can rebuild it from (seed, epoch, batch index). */
export interface MicroBatchData {
  ids: Int32Array;
  targets: Int32Array;
}

/** Where a worker sits: the model's name, its stage count and the replicas of each stage. */
export interface Topology {
  model: string;
  stages: number;
  replicas: number[];
}

export interface RunnerOptions {
  adam: AdamWConfig;
  /** Codec per boundary (stages − 1 of them); default none. */
  codecs?: Codec[];
  /** Called after every optimizer step of the stage (e.g. to re-project onto the subspace). */
  afterStep?: (stage: Stage) => void;
  /** Receive timeout; a peer that stays silent longer fails the run. */
  timeoutMs?: number;
  /** Global gradient-norm clip (synchronous) or clipNorm/√N per stage (asynchronous). */
  clipNorm?: number;
  /** Verification by recomputation (synchronous runs only; the same fraction on every worker). */
  audit?: AuditOptions;
  /** Called for every unit of work this worker did (receipts are made from these). */
  onWork?: (w: WorkDone) => void;
  /**
   * Fault injection for the malicious-worker tests and benchmark: where it returns true, this worker corrupts
   * its forward output of an own micro-batch — the activation it sends, or at the last stage the loss —
   * consistently: it hashes and sends the corrupted value, as a cheater would.
   */
  corrupt?: (step: number, micro: number) => boolean;
  /**
   * The device's turns, shared with whatever else uses it (inference requests; in one process, the other
   * stages): each unit of this worker's GPU work — a micro-batch forward or backward with its read-back, an
   * audit recompute, the parts of the optimizer update — runs as one 'train' turn. Waits for frames happen
   * between turns, never inside one. Default: the worker uses the device whenever it is ready to.
   */
  turns?: GpuTurns;
}

export interface AsyncOptions {
  /** Updates a forward's weights may lag behind its step (0: synchronous semantics, no flush needed). */
  staleness: number;
  /** 'nesterov': stale forwards run on the look-ahead w + d·(w − w_prev); 'none': on a plain stash of w. */
  correction: 'nesterov' | 'none';
  /** Learning rate of the run's step k (0-based within this call); default adam.lr. */
  lr?: (k: number) => number;
  /** Called when every worker has applied step k's update (Pipeline) . */
  onStep?: (r: AsyncStepResult) => void;
  /** Collects every operation's compute span (for replaying the schedule, see simulate.ts). */
  trace?: OpSpan[];
}

export interface AsyncStepResult {
  /** Index of the step within the run (0-based). */
  step: number;
  /** Mean loss of the step's micro-batches. */
  loss: number;
  losses: number[];
  /** Largest delay (in updates) of the weights a forward of this step ran on, over all stages. */
  maxDelay: number;
  /** Stages that refused this update (non-finite gradient); their weights and moments are unchanged. */
  refused: number[];
  /** Global gradient norm before clipping (synchronous mode with clipNorm). */
  gradNorm?: number;
}

/** One operation of one worker: its compute, from start to the hand-off of its output (waits excluded). */
export interface OpSpan {
  stage: number;
  replica: number;
  op: 'F' | 'B' | 'U';
  step: number;
  micro?: number;
  startMs: number;
  endMs: number;
}

/** What one runner saw of a step: its losses (last stage only), its delays, whether it refused the update. */
export interface RunnerStep {
  losses: Map<number, number>;
  maxDelay: number;
  refused: boolean;
  gradNorm?: number;
}

export interface RunContext {
  /** Frame step of the run's step 0 (frames are keyed by attempt, so a retried step never meets stale frames). */
  base: number;
  steps: MicroBatchData[][];
  batch: number;
  seq: number;
  opts: AsyncOptions;
  signal: AbortSignal;
  /** Called once this runner has applied (or refused) step k's update. */
  onUpdate?: (k: number, r: RunnerStep) => void;
}

export class StageRunner {
  readonly stage: Stage;
  readonly replica: number;
  readonly transport: Transport;
  readonly topology: Topology;
  readonly opts: RunnerOptions;
  /** Compute time of the current run (busy share = busyMs / wall time). */
  busyMs = 0;
  /** The update step; it keeps the last squared gradient norm across runs (asynchronous clipping). */
  private readonly updater: StageUpdate;

  constructor(stage: Stage, replica: number, transport: Transport, topology: Topology, opts: RunnerOptions) {
    this.stage = stage;
    this.replica = replica;
    this.transport = transport;
    this.topology = topology;
    this.opts = opts;
    this.updater = new StageUpdate(this);
  }

  get id(): string {
    return workerId(this.stage.spec.index, this.replica);
  }

  /** The codec of boundary b (between stages b and b + 1); undefined: raw float32. */
  codec(boundary: number): Codec | undefined {
    return this.opts.codecs?.[boundary];
  }

  /** The micro-batches of each step this replica serves: micro-batch m goes to replica m mod R. */
  mine(steps: MicroBatchData[][]): number[][] {
    const R = this.topology.replicas[this.stage.spec.index];
    return steps.map((micro) => micro.map((_, m) => m).filter((m) => m % R === this.replica));
  }

  /**
   * Runs this worker's part of `ctx.steps`; rejects on a boundary NaN/Inf, a refused frame, a silent peer or an abort.
   */
  async run(ctx: RunContext): Promise<void> {
    this.busyMs = 0;
    await new StageRun(this, ctx, this.updater, this.turn(ctx.signal), this.auditing(ctx)).execute();
  }

  /**
   * Runs one unit of GPU work, counted in busyMs: as a 'train' turn of the shared device when the runner has
   * one (a turn still queued when the run aborts is dropped), else at once.
   */
  private turn(signal: AbortSignal): Turn {
    const measured = async <T>(f: () => Promise<T> | T): Promise<T> => {
      const t = performance.now();
      try {
        return await f();
      } finally {
        this.busyMs += performance.now() - t;
      }
    };
    const turns = this.opts.turns;
    return turns ? (f) => turns.run('train', () => measured(f), { signal }) : measured;
  }

  /**
   * Whether this run verifies by recomputation: synchronous (replicas share weights until the update) with a fraction >
   * 0.
   */
  private auditing(ctx: RunContext): boolean {
    return ctx.opts.staleness === 0 && (this.opts.audit?.fraction ?? 0) > 0;
  }
}
