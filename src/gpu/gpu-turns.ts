/**
 * Turns on one GPU device, shared by two classes of work: 'train' (one unit of a stage's training — a
 * micro-batch forward or backward, or the optimizer update) and 'infer' (one inference request). A stage
 * holder trains and serves inference with the same weights on the same device; without arbitration an
 * inference request runs whenever the event loop happens to let it, and a long training step starves it
 * (or the reverse). Here every unit of GPU work asks for a turn and only one turn runs at a time.
 *
 * Priority: `inferenceShare` p ∈ [0, 1] is the share of turns inference gets while both classes wait
 * (stride scheduling: a class's pass advances by 1/weight per turn and the lowest pass goes next, ties to the
 * class that did not run last; a class that was idle re-enters at the virtual time — the pass of the latest
 * turn — so idleness earns no burst of saved-up turns, while a requester that always has its next request
 * queued by the time the device is free, as a decode loop does, keeps its full share). p = 1: inference always
 * first; p = 0: inference only when no training turn waits.
 *
 * GPU-use cap: `dutyCycle` d ∈ (0, 1]. After a turn that took t ms the device rests t·(1 − d)/d ms before the
 * next one starts, so over busy stretches the device computes a share d of the wall time (BOINC's "use at
 * most N % of CPU time").
 *
 * pause(): no new turn starts (the running one finishes) until resume() — for a hidden tab or a laptop on
 * battery. Work must never wait on another turn from inside a turn (the queue would deadlock): a turn is
 * compute only, network waits go between turns.
 *
 * Pure TypeScript (timers and promises), so it is unit-tested without a GPU and runs in the tab and in Node.
 */
import { TesseraError } from '../errors.ts';
import { ArgumentError } from './errors.ts';

export type TurnKind = 'train' | 'infer';
export const TURN_KINDS: readonly TurnKind[] = ['train', 'infer'];

export interface TurnStats {
  /** Turns that ran (failed ones included). */
  turns: number;
  /** Turns whose function threw or rejected. */
  failed: number;
  /** Time spent running this class's turns. */
  busyMs: number;
  /** Time this class's turns spent queued, from run() to their start (rests and pauses included). */
  waitMs: number;
  maxWaitMs: number;
}

export interface GpuTurnsOptions {
  /** Share of turns inference gets while both classes wait, in [0, 1] (default 0.5). */
  inferenceShare?: number;
  /** Share of wall time the device may compute, in (0, 1] (default 1: no cap). */
  dutyCycle?: number;
}

export interface RunTurnOptions {
  /** Aborting drops the turn if it has not started yet (it rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** A turn was dropped before it started (its signal aborted). */
export class TurnAbortedError extends TesseraError {
  constructor(kind: TurnKind, reason: unknown) {
    super(
      'turn-aborted',
      `${kind} turn dropped before it started: ${reason instanceof Error ? reason.message : String(reason)}`,
    );
  }
}

interface Waiting {
  kind: TurnKind;
  queuedAt: number;
  start: () => void;
}

/** The next macrotask: lets the continuations of the turn that just ended queue their next turns first. */
const nextTask: (f: () => void) => void =
  typeof setImmediate === 'function' ? (f) => setImmediate(f) : (f) => setTimeout(f, 0);

const emptyStats = (): TurnStats => ({ turns: 0, failed: 0, busyMs: 0, waitMs: 0, maxWaitMs: 0 });

export function checkInferenceShare(p: number): number {
  if (!(typeof p === 'number' && p >= 0 && p <= 1))
    throw new ArgumentError(`inference share must be a number in [0, 1], got ${p}`);
  return p;
}

export function checkDutyCycle(d: number): number {
  if (!(typeof d === 'number' && d > 0 && d <= 1))
    throw new ArgumentError(`duty cycle must be a number in (0, 1], got ${d}`);
  return d;
}

export class GpuTurns {
  /** Per class, live; plus the total rest the duty cycle imposed. */
  readonly stats: { train: TurnStats; infer: TurnStats; restMs: number } = {
    train: emptyStats(),
    infer: emptyStats(),
    restMs: 0,
  };
  private share: number;
  private duty: number;
  private readonly queues: Record<TurnKind, Waiting[]> = { train: [], infer: [] };
  /**
   * Stride-scheduling passes (a class's pass advances by 1/weight per turn it gets) and the virtual time (the pass the
   * latest turn started at).
   */
  private readonly pass: Record<TurnKind, number> = { train: 0, infer: 0 };
  private virtualTime = 0;
  private lastKind: TurnKind | undefined;
  private running: TurnKind | undefined;
  private scheduled: ReturnType<typeof setTimeout> | 'task' | undefined;
  private isPaused = false;
  /** End and length of the last turn: the rest before the next one follows from them and the duty cycle. */
  private lastEnd = -Infinity;
  private lastMs = 0;

  constructor(opts: GpuTurnsOptions = {}) {
    this.share = checkInferenceShare(opts.inferenceShare ?? 0.5);
    this.duty = checkDutyCycle(opts.dutyCycle ?? 1);
  }

  get inferenceShare(): number {
    return this.share;
  }

  set inferenceShare(p: number) {
    this.share = checkInferenceShare(p);
    // New weights: both classes start level, from now.
    this.pass.train = this.pass.infer = this.virtualTime;
  }

  get dutyCycle(): number {
    return this.duty;
  }

  /** Takes effect for the rest after the last turn too (a pending rest is shortened or lengthened). */
  set dutyCycle(d: number) {
    this.duty = checkDutyCycle(d);
    if (this.scheduled !== undefined && this.scheduled !== 'task') {
      clearTimeout(this.scheduled);
      this.scheduled = undefined;
      this.pump();
    }
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /** Which class is running a turn now, if any. */
  get current(): TurnKind | undefined {
    return this.running;
  }

  /** Turns waiting, per class. */
  waiting(kind: TurnKind): number {
    return this.queues[kind].length;
  }

  /** No new turn starts until resume(); the running turn finishes. */
  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    this.isPaused = false;
    this.pump();
  }

  /** Runs `fn` as one turn of class `kind` once the device is this class's; resolves or rejects as fn does. */
  run<T>(kind: TurnKind, fn: () => Promise<T> | T, opts: RunTurnOptions = {}): Promise<T> {
    if (kind !== 'train' && kind !== 'infer')
      return Promise.reject(new ArgumentError(`turn kind must be 'train' or 'infer', got ${String(kind)}`));
    const { signal } = opts;
    if (signal?.aborted) return Promise.reject(new TurnAbortedError(kind, signal.reason));
    return new Promise<T>((resolve, reject) => {
      const queue = this.queues[kind];
      const w: Waiting = {
        kind,
        queuedAt: performance.now(),
        start: () => {
          signal?.removeEventListener('abort', onAbort);
          void this.execute(w, fn).then(resolve, reject);
        },
      };
      const onAbort = () => {
        const at = queue.indexOf(w);
        if (at < 0) return;
        queue.splice(at, 1);
        reject(new TurnAbortedError(kind, signal!.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      // A class that was idle re-enters at the virtual time: having had nothing to run earns no credit.
      if (queue.length === 0 && this.running !== kind) this.pass[kind] = Math.max(this.pass[kind], this.virtualTime);
      queue.push(w);
      this.pump();
    });
  }

  private async execute<T>(w: Waiting, fn: () => Promise<T> | T): Promise<T> {
    const s = this.stats[w.kind];
    const t0 = performance.now();
    const wait = t0 - w.queuedAt;
    s.waitMs += wait;
    s.maxWaitMs = Math.max(s.maxWaitMs, wait);
    try {
      return await fn();
    } catch (e) {
      s.failed++;
      throw e;
    } finally {
      const end = performance.now();
      s.turns++;
      s.busyMs += end - t0;
      this.lastEnd = end;
      this.lastMs = end - t0;
      this.stats.restMs += this.restAfter(this.lastMs);
      this.running = undefined;
      this.pump();
    }
  }

  private restAfter(ms: number): number {
    return (ms * (1 - this.duty)) / this.duty;
  }

  /** Schedules the next start: after the duty cycle's rest, and always on a later task. */
  private pump(): void {
    if (this.running || this.scheduled !== undefined || this.isPaused) return;
    if (!this.queues.train.length && !this.queues.infer.length) return;
    const delay = this.lastEnd + this.restAfter(this.lastMs) - performance.now();
    const go = () => {
      this.scheduled = undefined;
      this.startNext();
    };
    // Timers count whole milliseconds and may truncate: round up so the rest is never shorter than asked.
    if (delay > 0) this.scheduled = setTimeout(go, Math.ceil(delay));
    else {
      this.scheduled = 'task';
      nextTask(go);
    }
  }

  private startNext(): void {
    if (this.running || this.isPaused) return;
    const kind = this.choose();
    if (!kind) return;
    const w = this.queues[kind].shift()!;
    this.running = kind;
    this.lastKind = kind;
    this.virtualTime = this.pass[kind];
    const weight = kind === 'infer' ? this.share : 1 - this.share;
    if (weight > 0) this.pass[kind] += 1 / weight;
    w.start();
  }

  /** The class whose turn is next: the only one waiting, or by share when both wait. */
  private choose(): TurnKind | undefined {
    const train = this.queues.train.length > 0;
    const infer = this.queues.infer.length > 0;
    if (!train || !infer) return train ? 'train' : infer ? 'infer' : undefined;
    if (this.share >= 1) return 'infer';
    if (this.share <= 0) return 'train';
    const gap = this.pass.infer - this.pass.train;
    // A tie (within rounding of the summed strides) goes to the class that did not run last, else to inference.
    if (Math.abs(gap) <= 1e-9 * Math.max(1, Math.abs(this.pass.train)))
      return this.lastKind === 'infer' ? 'train' : 'infer';
    return gap < 0 ? 'infer' : 'train';
  }
}
