import { ArgumentError, ShapeError, type Gpu, type Tensor } from '../gpu/index.ts';
import type { Codec } from '../compress/codec.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import { Stage } from '../model/stage.ts';
import { splitStages } from '../model/stages.ts';
import type { AdamWConfig } from '../ops/adamw.ts';
import { gradNorm } from '../ops/gradclip.ts';
import { InMemoryNetwork } from './memory-transport.ts';
import { oneFOneB } from './schedule.ts';
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
  /** Optimizer steps applied. */
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

  /** Runs one optimizer step over `micro` micro-batches of shape [batch, seq]. */
  async trainStep(micro: MicroBatchData[], batch: number, seq: number): Promise<StepResult> {
    const M = micro.length;
    if (M < 1) throw new ArgumentError('trainStep needs at least one micro-batch');
    for (const mb of micro) {
      if (mb.ids.length !== batch * seq || mb.targets.length !== batch * seq) throw new ShapeError(`micro-batch must hold ${batch}×${seq} ids and targets`);
    }
    const step = this.round++;
    const losses = new Array<number>(M).fill(NaN);
    const abort = new AbortController();
    const norms = new SquaredNormExchange(this.workers.length, abort.signal);
    const t0 = performance.now();
    const sent0 = this.bytesSent();
    for (const ws of this.workers) for (const w of ws) w.busyMs = 0;
    const run = async (w: StageWorker) => {
      try {
        await this.runWorker(w, step, micro, batch, seq, losses, abort.signal, norms);
      } catch (e) {
        abort.abort(e instanceof Error ? e.message : String(e));
        throw e;
      }
    };
    const results = await Promise.allSettled(this.workers.flat().map(run));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) {
      // Refuse the whole step: drop in-flight activations and accumulated gradients; weights stay as they were.
      for (const w of this.workers.flat()) {
        for (let m = 0; m < M; m++) w.stage.discard(m);
        w.stage.zeroGrads();
      }
      const root = results.map((r) => (r.status === 'rejected' ? r.reason : undefined)).find((e) => e && !(e instanceof TransportError && /aborted/.test(e.message)));
      throw root ?? failure.reason;
    }
    this.step++;
    const ms = performance.now() - t0;
    const busy = new Map(this.workers.flat().map((w) => [w.id, w.busyMs / ms]));
    const gradNorm = this.opts.clipNorm ? Math.sqrt(await norms.total) : undefined;
    return { loss: losses.reduce((a, b) => a + b, 0) / M, losses, ms, tokens: M * batch * seq, bytes: this.bytesSent() - sent0, busy, gradNorm };
  }

  private bytesSent(): number {
    return this.workers.flat().reduce((a, w) => a + w.transport.stats.bytesSent, 0);
  }

  private async runWorker(
    w: StageWorker, step: number, micro: MicroBatchData[], batch: number, seq: number, losses: number[], signal: AbortSignal,
    norms: SquaredNormExchange,
  ): Promise<void> {
    const { gpu } = this;
    const s = w.stage.spec.index;
    const N = this.workers.length;
    const R = this.workers[s].length;
    const C = this.opts.model.dModel;
    const rows = batch * seq;
    const M = micro.length;
    const mine = micro.map((_, m) => m).filter((m) => m % R === w.replica);
    const sends: Promise<void>[] = [];
    const recvOpts = { timeoutMs: this.opts.timeoutMs, signal };
    const name = this.opts.modelName ?? 'model';
    const timed = async <T>(f: () => Promise<T> | T): Promise<T> => {
      const t = performance.now();
      try {
        return await f();
      } finally {
        w.busyMs += performance.now() - t;
      }
    };
    const ship = async (t: Tensor, m: number, kind: 'act' | 'grad', toStage: number, codec: Codec | undefined) => {
      const host = (await gpu.read(t)) as Float32Array;
      gpu.release(t);
      const bad = firstNonFinite(host);
      if (bad >= 0) throw new NonFiniteTensorError(`stage ${s} ${kind} output, micro-batch ${m}`, bad, host[bad]);
      const ids = micro[m].ids;
      const payload = codec ? codec.encode(host, [rows, C], { ids, kind }) : new Uint8Array(host.buffer, host.byteOffset, host.byteLength);
      const frame: Frame = { model: name, fromStage: s, fromReplica: w.replica, step, micro: m, kind, shape: [rows, C], codec: codec?.name ?? 'none', payload, ids };
      sends.push(w.transport.send(workerId(toStage, m % this.workers[toStage].length), frame));
    };
    const land = (f: Frame, m: number, kind: 'act' | 'grad', codec: Codec | undefined): Tensor => {
      if (f.shape[0] !== rows || f.shape[1] !== C) throw new ShapeError(`stage ${s}: ${kind} frame shape [${f.shape}] for micro-batch ${m}, expected [${rows}, ${C}]`);
      if ((codec?.name ?? 'none') !== f.codec) throw new ShapeError(`stage ${s}: frame codec ${f.codec}, expected ${codec?.name ?? 'none'}`);
      const host = codec
        ? codec.decode(f.payload, [rows, C], { ids: micro[m].ids, kind })
        : new Float32Array(f.payload.slice().buffer, 0, rows * C);
      if (host.length !== rows * C) throw new ShapeError(`stage ${s}: ${kind} payload holds ${host.length} values, expected ${rows * C}`);
      const bad = firstNonFinite(host);
      if (bad >= 0) throw new NonFiniteTensorError(`stage ${s} received ${kind}, micro-batch ${m}`, bad, host[bad]);
      return gpu.upload(host, [rows, C]);
    };
    for (const { op, micro: m } of oneFOneB(s, N, mine)) {
      if (op === 'F') {
        const input = s > 0 ? land(await w.transport.receive(step, m, 'act', recvOpts), m, 'act', this.codec(s - 1)) : undefined;
        const out = await timed(async () => {
          const r = w.stage.forward({ id: m, batch, seq, ids: micro[m].ids, targets: micro[m].targets, input });
          if (r.loss) {
            losses[m] = (await gpu.read(r.loss))[0];
            gpu.release(r.loss, r.logits);
          }
          return r.output;
        });
        if (out) await timed(() => ship(out, m, 'act', s + 1, this.codec(s)));
      } else {
        const grad = s < N - 1 ? land(await w.transport.receive(step, m, 'grad', recvOpts), m, 'grad', this.codec(s)) : undefined;
        const dx = await timed(async () => {
          const r = w.stage.backward(m, grad, 1 / M);
          await gpu.sync();
          return r;
        });
        if (dx) await timed(() => ship(dx, m, 'grad', s - 1, this.codec(s - 1)));
      }
    }
    await Promise.all(sends);
    if (R > 1) await this.allReduce(w, step, signal);
    let scale: Tensor | undefined;
    if (this.opts.clipNorm) {
      // Replicas hold identical gradients after the all-reduce: replica 0 speaks for its stage.
      const n = gradNorm(gpu, w.stage.grads());
      const sq = (await gpu.read(n))[0] ** 2;
      gpu.release(n);
      if (w.replica === 0) norms.put(s, sq);
      const total = Math.sqrt(await norms.total);
      scale = gpu.upload([Number.isFinite(total) ? Math.min(1, this.opts.clipNorm / (total + 1e-6)) : 0], [1]);
    }
    await timed(async () => {
      await w.stage.applyStep(this.opts.adam, scale);
      gpu.release(scale);
      this.opts.afterStep?.(w.stage);
      await gpu.sync();
    });
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
