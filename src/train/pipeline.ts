import { ArgumentError, ShapeError, type Gpu, type Tensor } from '../gpu/index.ts';
import type { Codec } from '../compress/codec.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import { NonFiniteGradientError, Stage, type WeightSet } from '../model/stage.ts';
import { splitStages } from '../model/stages.ts';
import type { AdamWConfig } from '../ops/adamw.ts';
import { gradNorm } from '../ops/gradclip.ts';
import { InMemoryNetwork } from './memory-transport.ts';
import { asyncOneFOneB } from './schedule.ts';
import { TransportError, type Frame, type Transport } from './transport.ts';

/** One micro-batch of data: any peer can rebuild it from (seed, epoch, batch index). */
export interface MicroBatchData {
  ids: Int32Array;
  targets: Int32Array;
}

export interface PipelineOptions {
  model: ModelConfig;
  stages: number;
  /** Layers per stage (default: as even as possible). */
  layersPerStage?: number[];
  /** Replicas of each stage (default 1 each); micro-batch m goes to replica m mod R. */
  replicas?: number[];
  adam: AdamWConfig;
  /** Codec per boundary (stages − 1 of them); default: none. */
  codecs?: Codec[];
  network?: InMemoryNetwork;
  modelName?: string;
  /** Initial weights by parameter name (default: seeded init). */
  weights?: Map<string, Float32Array>;
  /** Called after every optimizer step of a stage (e.g. to re-project onto the subspace). */
  afterStep?: (stage: Stage) => void;
  /** Receive timeout; a peer that stays silent longer fails the step. */
  timeoutMs?: number;
  /**
   * Clip the global gradient norm (over every stage's parameters) to this value. Stages exchange one scalar,
   * their squared gradient norm, so the clip equals the unsplit model's.
   */
  clipNorm?: number;
}

export interface StepResult {
  /** Mean loss over the step's micro-batches. */
  loss: number;
  /** Per micro-batch losses. */
  losses: number[];
  ms: number;
  tokens: number;
  /** Bytes sent by all workers during the step. */
  bytes: number;
  /** Per worker: share of the step's wall time spent computing (1 − idle). */
  busy: Map<string, number>;
  /** Global gradient norm before clipping (when clipNorm is set). */
  gradNorm?: number;
}

export interface AsyncOptions {
  /** Updates a forward's weights may lag behind its step (0: synchronous semantics, no flush needed). */
  staleness: number;
  /** 'nesterov': stale forwards run on the look-ahead w + d·(w − w_prev); 'none': on a plain stash of w. */
  correction: 'nesterov' | 'none';
  /** Learning rate of the run's step k (0-based within this call); default opts.adam.lr. */
  lr?: (k: number) => number;
  /** Called when every worker has applied step k's update. */
  onStep?: (r: AsyncStepResult) => void;
  /** Collects every operation's compute span (for replaying the schedule, see simulate.ts). */
  trace?: OpSpan[];
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

export interface AsyncRunResult {
  steps: AsyncStepResult[];
  ms: number;
  tokens: number;
  bytes: number;
  /** Per worker: share of the run's wall time spent computing (1 − idle). */
  busy: Map<string, number>;
}

interface RunContext {
  /** Frame step of the run's step 0 (frames are keyed by attempt, so a retried step never meets stale frames). */
  base: number;
  steps: MicroBatchData[][];
  batch: number;
  seq: number;
  opts: AsyncOptions;
  signal: AbortSignal;
  /** Exchange squared norms across stages at every update (synchronous mode): global clip, joint refusal. */
  globalClip: boolean;
  results: AsyncStepResult[];
  norms: SquaredNormExchange[];
  /** Workers that have applied (or refused) each step's update. */
  updated: number[];
}

/** A stage-local id for micro-batch m of step k, unique within a run. */
const microId = (k: number, m: number, steps: MicroBatchData[][]): number => k * Math.max(...steps.map((x) => x.length)) + m;

/** Index of the first NaN/Inf in a, or −1. */
const firstNonFinite = (a: Float32Array): number => {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
};

/** A NaN or Inf arrived at a stage boundary: the step is refused, nothing reached the GPU. */
export class NonFiniteTensorError extends Error {
  constructor(what: string, index: number, value: number) {
    super(`${what}: element ${index} is ${value}; step refused`);
    this.name = 'NonFiniteTensorError';
  }
}

/** One (stage, replica): a Stage on the GPU and its endpoint. */
export class StageWorker {
  readonly stage: Stage;
  readonly replica: number;
  readonly transport: Transport;
  busyMs = 0;

  constructor(stage: Stage, replica: number, transport: Transport) {
    this.stage = stage;
    this.replica = replica;
    this.transport = transport;
  }

  get id(): string {
    return workerId(this.stage.spec.index, this.replica);
  }
}

export function workerId(stage: number, replica: number): string {
  return `s${stage}r${replica}`;
}

/**
 * Synchronous pipeline-parallel training: N stages (each possibly replicated) run the 1F1B schedule over M
 * micro-batches per step, pass activations forward and activation gradients back through a Transport,
 * average gradients across replicas, and take one AdamW step together. Split N ways without compression,
 * it computes what the unsplit model computes.
 */
export class Pipeline {
  readonly gpu: Gpu;
  readonly opts: PipelineOptions;
  readonly workers: StageWorker[][];
  readonly network: InMemoryNetwork;
  /** Optimizer steps applied by every stage. */
  step = 0;
  /** Step attempts, refused ones included: frames are keyed by it, so a retried step never meets stale frames. */
  private round = 0;

  private constructor(gpu: Gpu, opts: PipelineOptions, workers: StageWorker[][], network: InMemoryNetwork) {
    this.gpu = gpu;
    this.opts = opts;
    this.workers = workers;
    this.network = network;
  }

  static create(gpu: Gpu, opts: PipelineOptions): Pipeline {
    validateConfig(opts.model, gpu.limits);
    const specs = splitStages(opts.model, opts.stages, opts.layersPerStage);
    const replicas = opts.replicas ?? specs.map(() => 1);
    if (replicas.length !== specs.length || replicas.some((r) => !Number.isInteger(r) || r < 1)) {
      throw new ArgumentError(`replicas [${replicas}] must give a positive count for each of ${specs.length} stages`);
    }
    if (opts.codecs && opts.codecs.length !== specs.length - 1) throw new ArgumentError(`need ${specs.length - 1} codecs, got ${opts.codecs.length}`);
    const network = opts.network ?? new InMemoryNetwork();
    const workers = specs.map((spec) =>
      Array.from({ length: replicas[spec.index] }, (_, r) => new StageWorker(Stage.create(gpu, opts.model, spec, opts.weights), r, network.endpoint(workerId(spec.index, r)))),
    );
    return new Pipeline(gpu, opts, workers, network);
  }

  get stages(): Stage[] {
    return this.workers.map((ws) => ws[0].stage);
  }

  private codec(boundary: number): Codec | undefined {
    return this.opts.codecs?.[boundary];
  }

  /**
   * Synchronous training: one optimizer step over `micro` micro-batches of shape [batch, seq] under 1F1B,
   * flushed at the end. If any worker fails (a NaN/Inf at a boundary, a silent peer) the whole step is
   * refused: in-flight activations and accumulated gradients are dropped and no stage updates.
   */
  async trainStep(micro: MicroBatchData[], batch: number, seq: number): Promise<StepResult> {
    const run = await this.run([micro], batch, seq, { staleness: 0, correction: 'none' });
    const [r] = run.steps;
    if (r.refused.length) throw new NonFiniteGradientError(r.gradNorm ?? NaN);
    return { loss: r.loss, losses: r.losses, ms: run.ms, tokens: run.tokens, bytes: run.bytes, busy: run.busy, gradNorm: r.gradNorm };
  }

  /**
   * Asynchronous training over several optimizer steps without a flush between them (see asyncOneFOneB):
   * a stage starts the next step's forwards while the current step's backwards drain, on weights that lag
   * by at most `staleness` updates. Each forward that runs on stale weights keeps its own copy of them for
   * its backward (weight stashing); with `correction: 'nesterov'` that copy is the look-ahead
   * w + d·(w − w_prev), d being the delay, so the gradient is taken where the weights will be when it
   * lands. Gradient clipping is per stage in this mode (each stage clips to clipNorm/√N, so the global norm
   * stays ≤ clipNorm without a cross-stage exchange that would re-introduce a barrier). A stage whose
   * gradient is non-finite skips that update (reported per step) and goes on; a NaN/Inf at a boundary or a
   * silent peer stops the run with every update applied so far kept, and in-flight work dropped.
   */
  async trainAsync(steps: MicroBatchData[][], batch: number, seq: number, opts: AsyncOptions): Promise<AsyncRunResult> {
    return this.run(steps, batch, seq, opts);
  }

  private async run(steps: MicroBatchData[][], batch: number, seq: number, opts: AsyncOptions): Promise<AsyncRunResult> {
    if (steps.length < 1 || steps.some((m) => m.length < 1)) throw new ArgumentError('training needs at least one step of at least one micro-batch');
    for (const micro of steps) {
      for (const mb of micro) {
        if (mb.ids.length !== batch * seq || mb.targets.length !== batch * seq) throw new ShapeError(`micro-batch must hold ${batch}×${seq} ids and targets`);
      }
    }
    if (!Number.isInteger(opts.staleness) || opts.staleness < 0) throw new ArgumentError(`staleness must be an integer ≥ 0, got ${opts.staleness}`);
    const base = this.round;
    this.round += steps.length;
    const abort = new AbortController();
    const ctx: RunContext = {
      base, steps, batch, seq, opts, signal: abort.signal, globalClip: opts.staleness === 0,
      results: steps.map((micro, k) => ({ step: k, loss: NaN, losses: new Array<number>(micro.length).fill(NaN), maxDelay: 0, refused: [] })),
      norms: steps.map(() => new SquaredNormExchange(this.workers.length, abort.signal)),
      updated: steps.map(() => 0),
    };
    const t0 = performance.now();
    const sent0 = this.bytesSent();
    for (const w of this.workers.flat()) w.busyMs = 0;
    const run = async (w: StageWorker) => {
      try {
        await this.runWorker(w, ctx);
      } catch (e) {
        abort.abort(e instanceof Error ? e.message : String(e));
        throw e;
      }
    };
    const results = await Promise.allSettled(this.workers.flat().map(run));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) {
      // Drop in-flight activations and the gradients of unfinished steps; applied updates stay.
      for (const w of this.workers.flat()) {
        for (let k = 0; k < steps.length; k++) for (let m = 0; m < steps[k].length; m++) w.stage.discard(microId(k, m, steps));
        w.stage.zeroGrads();
      }
      this.step += ctx.results.filter((r, k) => ctx.updated[k] === this.workers.flat().length && r.refused.length === 0).length;
      const root = results.map((r) => (r.status === 'rejected' ? r.reason : undefined)).find((e) => e && !(e instanceof TransportError && /aborted/.test(e.message)));
      throw root ?? failure.reason;
    }
    this.step += ctx.results.filter((r) => r.refused.length === 0).length;
    const ms = performance.now() - t0;
    return {
      steps: ctx.results, ms, tokens: steps.reduce((a, m) => a + m.length, 0) * batch * seq, bytes: this.bytesSent() - sent0,
      busy: new Map(this.workers.flat().map((w) => [w.id, w.busyMs / ms])),
    };
  }

  /** Bytes all workers have sent over the pipeline's life. */
  bytesSent(): number {
    return this.workers.flat().reduce((a, w) => a + w.transport.stats.bytesSent, 0);
  }

  private async runWorker(w: StageWorker, ctx: RunContext): Promise<void> {
    const { gpu } = this;
    const { steps, batch, seq, signal, base } = ctx;
    const s = w.stage.spec.index;
    const N = this.workers.length;
    const R = this.workers[s].length;
    const C = this.opts.model.dModel;
    const rows = batch * seq;
    const mine = steps.map((micro) => micro.map((_, m) => m).filter((m) => m % R === w.replica));
    const sends: Promise<void>[] = [];
    const name = this.opts.modelName ?? 'model';
    let version = 0;
    const recv = (k: number, m: number, kind: 'act' | 'grad') =>
      w.transport.receive(base + k, m, kind, { timeoutMs: this.opts.timeoutMs, signal, forgetBefore: base + version - 1 });
    const timed = async <T>(f: () => Promise<T> | T): Promise<T> => {
      const t = performance.now();
      try {
        return await f();
      } finally {
        w.busyMs += performance.now() - t;
      }
    };
    const span = (op: OpSpan['op'], step: number, micro: number | undefined, startMs: number) =>
      ctx.opts.trace?.push({ stage: s, replica: w.replica, op, step, micro, startMs, endMs: performance.now() });
    const ship = async (t: Tensor, k: number, m: number, kind: 'act' | 'grad', toStage: number, codec: Codec | undefined) => {
      const host = (await gpu.read(t)) as Float32Array;
      gpu.release(t);
      const bad = firstNonFinite(host);
      if (bad >= 0) throw new NonFiniteTensorError(`stage ${s} ${kind} output, micro-batch ${m}`, bad, host[bad]);
      const ids = steps[k][m].ids;
      const payload = codec ? codec.encode(host, [rows, C], { ids, kind }) : new Uint8Array(host.buffer, host.byteOffset, host.byteLength);
      const frame: Frame = { model: name, fromStage: s, fromReplica: w.replica, step: base + k, micro: m, kind, shape: [rows, C], codec: codec?.name ?? 'none', payload, ids };
      sends.push(w.transport.send(workerId(toStage, m % this.workers[toStage].length), frame));
    };
    const land = (f: Frame, k: number, m: number, kind: 'act' | 'grad', codec: Codec | undefined): Tensor => {
      if (f.shape[0] !== rows || f.shape[1] !== C) throw new ShapeError(`stage ${s}: ${kind} frame shape [${f.shape}] for micro-batch ${m}, expected [${rows}, ${C}]`);
      if ((codec?.name ?? 'none') !== f.codec) throw new ShapeError(`stage ${s}: frame codec ${f.codec}, expected ${codec?.name ?? 'none'}`);
      const ids = steps[k][m].ids;
      const host = codec ? codec.decode(f.payload, [rows, C], { ids, kind }) : new Float32Array(f.payload.slice().buffer, 0, rows * C);
      if (host.length !== rows * C) throw new ShapeError(`stage ${s}: ${kind} payload holds ${host.length} values, expected ${rows * C}`);
      const bad = firstNonFinite(host);
      if (bad >= 0) throw new NonFiniteTensorError(`stage ${s} received ${kind}, micro-batch ${m}`, bad, host[bad]);
      return gpu.upload(host, [rows, C]);
    };
    // Forwards that run `d` updates behind their step share one stashed (or look-ahead) weight set per d;
    // their backwards all come after the next update, so the sets of one version never outlive it.
    let stashes = new Map<number, WeightSet>();
    const lookAhead = ctx.opts.correction === 'nesterov' && ctx.opts.staleness > 0;
    for (const op of asyncOneFOneB(s, N, mine, ctx.opts.staleness)) {
      if (op.op === 'F') {
        const { step: k, micro: m, delay } = op;
        const mb = steps[k][m];
        const input = s > 0 ? land(await recv(k, m, 'act'), k, m, 'act', this.codec(s - 1)) : undefined;
        let weights: WeightSet | undefined;
        if (delay > 0) {
          weights = stashes.get(delay) ?? w.stage.weightSet(lookAhead ? delay : 0);
          stashes.set(delay, weights);
          ctx.results[k].maxDelay = Math.max(ctx.results[k].maxDelay, delay);
        }
        const t0 = performance.now();
        const out = await timed(async () => {
          const r = w.stage.forward({ id: microId(k, m, steps), batch, seq, ids: mb.ids, targets: mb.targets, input }, weights);
          if (r.loss) {
            ctx.results[k].losses[m] = (await gpu.read(r.loss))[0];
            gpu.release(r.loss, r.logits);
          }
          return r.output;
        });
        if (out) await timed(() => ship(out, k, m, 'act', s + 1, this.codec(s)));
        span('F', k, m, t0);
      } else if (op.op === 'B') {
        const { step: k, micro: m } = op;
        const grad = s < N - 1 ? land(await recv(k, m, 'grad'), k, m, 'grad', this.codec(s)) : undefined;
        const t0 = performance.now();
        const dx = await timed(async () => {
          const r = w.stage.backward(microId(k, m, steps), grad, 1 / steps[k].length);
          await gpu.sync();
          return r;
        });
        if (dx) await timed(() => ship(dx, k, m, 'grad', s - 1, this.codec(s - 1)));
        span('B', k, m, t0);
      } else {
        await this.update(w, op.step, ctx, lookAhead, timed, (t0) => span('U', op.step, undefined, t0));
        stashes = new Map();
        version++;
      }
    }
    await Promise.all(sends);
  }

  /** Update U(k) of one worker: replica all-reduce, clipping, AdamW, the afterStep hook. */
  private async update(
    w: StageWorker, k: number, ctx: RunContext, remember: boolean, timed: <T>(f: () => Promise<T> | T) => Promise<T>, span: (startMs: number) => void,
  ): Promise<void> {
    const { gpu } = this;
    const s = w.stage.spec.index;
    const result = ctx.results[k];
    if (this.workers[s].length > 1) await this.allReduce(w, ctx.base + k, ctx.signal);
    let scale: Tensor | undefined;
    const clip = this.opts.clipNorm;
    if (ctx.globalClip || clip) {
      const n = gradNorm(gpu, w.stage.grads());
      const sq = (await gpu.read(n))[0] ** 2;
      gpu.release(n);
      let norm = Math.sqrt(sq);
      if (ctx.globalClip) {
        // Synchronous mode: stages exchange one scalar per step, so clipping uses the global norm and a
        // non-finite gradient anywhere refuses the update everywhere. Replicas hold identical gradients
        // after the all-reduce: replica 0 speaks for its stage.
        if (w.replica === 0) ctx.norms[k].put(s, sq);
        norm = Math.sqrt(await ctx.norms[k].total);
        result.gradNorm = norm;
      }
      if (!Number.isFinite(norm)) {
        w.stage.zeroGrads();
        if (!result.refused.includes(s)) result.refused.push(s);
        return this.updateDone(k, ctx);
      }
      // Asynchronous mode clips per stage to clipNorm/√N, which keeps the global norm ≤ clipNorm.
      const limit = clip ? (ctx.globalClip ? clip : clip / Math.sqrt(this.workers.length)) : Infinity;
      if (norm > limit) scale = gpu.upload([limit / (norm + 1e-6)], [1]);
    }
    const t0 = performance.now();
    await timed(async () => {
      if (remember) w.stage.rememberWeights();
      const adam = ctx.opts.lr ? { ...this.opts.adam, lr: ctx.opts.lr(result.step) } : this.opts.adam;
      try {
        await w.stage.applyStep(adam, scale);
        this.opts.afterStep?.(w.stage);
      } catch (e) {
        if (!(e instanceof NonFiniteGradientError)) throw e;
        if (!result.refused.includes(s)) result.refused.push(s);
      } finally {
        gpu.release(scale);
      }
      await gpu.sync();
    });
    span(t0); // the update's own compute: the norm exchange's wait is not part of it
    this.updateDone(k, ctx);
  }

  private updateDone(k: number, ctx: RunContext): void {
    if (++ctx.updated[k] < this.workers.flat().length) return;
    const result = ctx.results[k];
    result.loss = result.losses.reduce((a, b) => a + b, 0) / result.losses.length;
    ctx.opts.onStep?.(result);
  }

  /**
   * Sums the gradients of the replicas of one stage: every replica sends its gradients to every other one
   * and adds all contributions in replica order, so every replica ends with bit-identical gradients.
   */
  private async allReduce(w: StageWorker, step: number, signal: AbortSignal): Promise<void> {
    const { gpu } = this;
    const s = w.stage.spec.index;
    const peers = this.workers[s];
    const grads = await w.stage.readGrads();
    const names = [...grads.keys()];
    const total = names.reduce((a, n) => a + grads.get(n)!.length, 0);
    const flat = new Float32Array(total);
    let at = 0;
    for (const n of names) {
      flat.set(grads.get(n)!, at);
      at += grads.get(n)!.length;
    }
    const frame: Frame = {
      model: this.opts.modelName ?? 'model', fromStage: s, fromReplica: w.replica, step, micro: w.replica, kind: 'gradsync',
      shape: [1, total], codec: 'none', payload: new Uint8Array(flat.buffer),
    };
    await Promise.all(peers.filter((p) => p !== w).map((p) => w.transport.send(p.id, frame)));
    const parts: Float32Array[] = [];
    for (const p of peers) {
      if (p === w) parts.push(flat);
      else {
        const f = await w.transport.receive(step, p.replica, 'gradsync', { timeoutMs: this.opts.timeoutMs, signal });
        if (f.shape[1] !== total) throw new ShapeError(`stage ${s}: gradient sync from replica ${p.replica} has ${f.shape[1]} values, expected ${total}`);
        parts.push(new Float32Array(f.payload.slice().buffer));
      }
    }
    const sum = new Float32Array(total);
    for (const part of parts) for (let i = 0; i < total; i++) sum[i] += part[i];
    at = 0;
    for (const n of names) {
      const slot = w.stage.slots.get(n)!;
      gpu.write(slot.grad, sum.subarray(at, at + slot.grad.size));
      at += slot.grad.size;
    }
  }

  /** Mean loss over evaluation micro-batches (forward only, through the same boundaries and codecs). */
  async evaluate(micro: MicroBatchData[], batch: number, seq: number): Promise<number> {
    const { gpu } = this;
    let total = 0;
    const C = this.opts.model.dModel;
    const rows = batch * seq;
    for (let m = 0; m < micro.length; m++) {
      let input: Tensor | undefined;
      for (const ws of this.workers) {
        const st = ws[0].stage;
        const id = -1 - m; // negative ids never collide with training micro-batches
        const r = st.forward({ id, batch, seq, ids: micro[m].ids, targets: micro[m].targets, input });
        st.discard(id);
        if (r.loss) {
          total += (await gpu.read(r.loss))[0];
          gpu.release(r.loss, r.logits);
        } else if (r.output) {
          // Pass through the boundary codec exactly as training does.
          const codec = this.codec(st.spec.index);
          const host = (await gpu.read(r.output)) as Float32Array;
          gpu.release(r.output);
          const back = codec ? codec.decode(codec.encode(host, [rows, C], { ids: micro[m].ids, kind: 'act' }), [rows, C], { ids: micro[m].ids, kind: 'act' }) : host;
          input = gpu.upload(back, [rows, C]);
        }
      }
    }
    return total / micro.length;
  }

  destroy(): void {
    for (const w of this.workers.flat()) {
      w.stage.destroy();
      w.transport.close();
    }
  }
}

/**
 * Sums one scalar per stage (its squared gradient norm) and hands the total to every worker: in-process,
 * the one number stages must exchange for global clipping (over the network: one tiny frame per stage).
 */
class SquaredNormExchange {
  private readonly parts = new Map<number, number>();
  private resolve!: (v: number) => void;
  readonly total: Promise<number>;
  private readonly stages: number;

  constructor(stages: number, signal: AbortSignal) {
    this.stages = stages;
    this.total = new Promise((resolve, reject) => {
      this.resolve = resolve;
      signal.addEventListener('abort', () => reject(new TransportError('gradient-norm exchange aborted')), { once: true });
    });
    this.total.catch(() => undefined); // unobserved when clipping is off or the step fails
  }

  put(stage: number, squaredNorm: number): void {
    this.parts.set(stage, squaredNorm);
    if (this.parts.size === this.stages) {
      let sum = 0;
      for (let s = 0; s < this.stages; s++) sum += this.parts.get(s)!; // fixed order: same total everywhere
      this.resolve(sum);
    }
  }
}
