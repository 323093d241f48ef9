import { ArgumentError, ShapeError, type Gpu, type Tensor } from '../gpu/index.ts';
import type { Codec } from '../compress/codec.ts';
import type { GpuTurns } from '../gpu/gpu-turns.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import { NonFiniteGradientError, Stage } from '../model/stage.ts';
import { splitStages } from '../model/stages.ts';
import type { AdamWConfig } from '../ops/adamw.ts';
import { InMemoryNetwork } from './memory-transport.ts';
import {
  microId,
  StageRunner,
  workerId,
  type AsyncOptions,
  type AsyncStepResult,
  type MicroBatchData,
  type RunnerOptions,
  type RunnerStep,
} from './stage-runner.ts';
import { TransportError } from './transport.ts';

export {
  NonFiniteTensorError,
  workerId,
  type AsyncOptions,
  type AsyncStepResult,
  type MicroBatchData,
  type OpSpan,
} from './stage-runner.ts';

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
  /** The device's turns (one GPU: every worker's units take turns on it, with whatever else shares it). */
  turns?: GpuTurns;
  /** Per-worker additions to the runner options (audits, work reports, fault injection). */
  worker?: (stage: number, replica: number) => Partial<RunnerOptions>;
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

export interface AsyncRunResult {
  steps: AsyncStepResult[];
  ms: number;
  tokens: number;
  bytes: number;
  /** Per worker: share of the run's wall time spent computing (1 − idle). */
  busy: Map<string, number>;
}

/**
 * Pipeline-parallel training in one process: N stages (each possibly replicated) as StageRunners over an
 * in-memory network, running the 1F1B schedule over M micro-batches per step, passing activations forward
 * and activation gradients back, averaging gradients across replicas. Synchronous (trainStep) or with
 * bounded staleness (trainAsync). Split N ways without compression, it computes what the unsplit model does.
 */
export class Pipeline {
  readonly gpu: Gpu;
  readonly opts: PipelineOptions;
  readonly workers: StageRunner[][];
  readonly network: InMemoryNetwork;
  /** Optimizer steps applied by every stage. */
  step = 0;
  /** Step attempts, refused ones included: frames are keyed by it, so a retried step never meets stale frames. */
  private round = 0;

  private constructor(gpu: Gpu, opts: PipelineOptions, workers: StageRunner[][], network: InMemoryNetwork) {
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
    if (opts.codecs && opts.codecs.length !== specs.length - 1)
      throw new ArgumentError(`need ${specs.length - 1} codecs, got ${opts.codecs.length}`);
    const network = opts.network ?? new InMemoryNetwork();
    const topology = { model: opts.modelName ?? 'model', stages: specs.length, replicas };
    const runnerOpts = {
      adam: opts.adam,
      codecs: opts.codecs,
      afterStep: opts.afterStep,
      timeoutMs: opts.timeoutMs,
      clipNorm: opts.clipNorm,
      turns: opts.turns,
    };
    const workers = specs.map((spec) =>
      Array.from(
        { length: replicas[spec.index] },
        (_, r) =>
          new StageRunner(
            Stage.create(gpu, opts.model, spec, opts.weights),
            r,
            network.endpoint(workerId(spec.index, r)),
            topology,
            { ...runnerOpts, ...opts.worker?.(spec.index, r) },
          ),
      ),
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
    return {
      loss: r.loss,
      losses: r.losses,
      ms: run.ms,
      tokens: run.tokens,
      bytes: run.bytes,
      busy: run.busy,
      gradNorm: r.gradNorm,
    };
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

  private async run(
    steps: MicroBatchData[][],
    batch: number,
    seq: number,
    opts: AsyncOptions,
  ): Promise<AsyncRunResult> {
    if (steps.length < 1 || steps.some((m) => m.length < 1))
      throw new ArgumentError('training needs at least one step of at least one micro-batch');
    for (const micro of steps) {
      for (const mb of micro) {
        if (mb.ids.length !== batch * seq || mb.targets.length !== batch * seq)
          throw new ShapeError(`micro-batch must hold ${batch}×${seq} ids and targets`);
      }
    }
    if (!Number.isInteger(opts.staleness) || opts.staleness < 0)
      throw new ArgumentError(`staleness must be an integer ≥ 0, got ${opts.staleness}`);
    const base = this.round;
    this.round += steps.length;
    const abort = new AbortController();
    const all = this.workers.flat();
    const results: AsyncStepResult[] = steps.map((micro, k) => ({
      step: k,
      loss: NaN,
      losses: new Array<number>(micro.length).fill(NaN),
      maxDelay: 0,
      refused: [],
    }));
    const updated = steps.map(() => 0);
    // Merge what each worker saw of step k; once every worker has updated, the step is done.
    const onUpdate = (w: StageRunner) => (k: number, r: RunnerStep) => {
      const res = results[k];
      for (const [m, loss] of r.losses) res.losses[m] = loss;
      res.maxDelay = Math.max(res.maxDelay, r.maxDelay);
      if (r.refused && !res.refused.includes(w.stage.spec.index)) res.refused.push(w.stage.spec.index);
      if (r.gradNorm !== undefined) res.gradNorm = r.gradNorm;
      if (++updated[k] < all.length) return;
      res.refused.sort((a, b) => a - b);
      res.loss = res.losses.reduce((a, b) => a + b, 0) / res.losses.length;
      opts.onStep?.(res);
    };
    const t0 = performance.now();
    const sent0 = this.bytesSent();
    const run = async (w: StageRunner) => {
      try {
        await w.run({ base, steps, batch, seq, opts, signal: abort.signal, onUpdate: onUpdate(w) });
      } catch (e) {
        abort.abort(e instanceof Error ? e.message : String(e));
        throw e;
      }
    };
    const settled = await Promise.allSettled(all.map(run));
    const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const complete = (k: number) => updated[k] === all.length && results[k].refused.length === 0;
    if (failure) {
      // Drop in-flight activations and the gradients of unfinished steps; applied updates stay.
      for (const w of all) {
        for (let k = 0; k < steps.length; k++)
          for (let m = 0; m < steps[k].length; m++) w.stage.discard(microId(k, m, steps));
        w.stage.zeroGrads();
      }
      this.step += steps.filter((_, k) => complete(k)).length;
      const root = settled
        .map((r) => (r.status === 'rejected' ? r.reason : undefined))
        .find((e) => e && !(e instanceof TransportError && e.code === 'receive-aborted'));
      throw root ?? failure.reason;
    }
    this.step += steps.filter((_, k) => complete(k)).length;
    const ms = performance.now() - t0;
    return {
      steps: results,
      ms,
      tokens: steps.reduce((a, m) => a + m.length, 0) * batch * seq,
      bytes: this.bytesSent() - sent0,
      busy: new Map(all.map((w) => [w.id, w.busyMs / ms])),
    };
  }

  /** Bytes all workers have sent over the pipeline's life. */
  bytesSent(): number {
    return this.workers.flat().reduce((a, w) => a + w.transport.stats.bytesSent, 0);
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
          const back = codec
            ? codec.decode(codec.encode(host, [rows, C], { ids: micro[m].ids, kind: 'act' }), [rows, C], {
                ids: micro[m].ids,
                kind: 'act',
              })
            : host;
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
