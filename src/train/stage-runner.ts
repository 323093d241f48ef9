import type { Codec } from '../compress/codec.ts';
import { TesseraError } from '../errors.ts';
import type { GpuTurns } from '../gpu/gpu-turns.ts';
import { ShapeError, type Tensor } from '../gpu/index.ts';
import { NonFiniteGradientError, type Stage, type WeightSet } from '../model/stage.ts';
import type { AdamWConfig } from '../ops/adamw.ts';
import { gradNorm } from '../ops/gradclip.ts';
import { asyncOneFOneB } from './schedule.ts';
import type { Frame, Transport } from './transport.ts';
import { hashBytes, hashIds, hashLoss, type AuditOptions, type WorkDone } from './work.ts';

/**
 * One pipeline worker: a stage (one replica of it) running its part of the 1F1B schedule over a Transport.
 * Everything it needs from the other workers arrives as frames — activations, gradients, replica gradients
 * for the all-reduce, other stages' gradient norms — so the same runner trains in one process (the Pipeline
 * composes N of them over the in-memory network) or alone in a tab or a Node worker over libp2p.
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

export function workerId(stage: number, replica: number): string {
  return `s${stage}r${replica}`;
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

/** One unit of GPU work (see StageRunner.turn). */
type Turn = <T>(f: () => Promise<T> | T) => Promise<T>;

/** A NaN or Inf arrived at a stage boundary: the step is refused, nothing reached the GPU. */
export class NonFiniteTensorError extends TesseraError {
  constructor(what: string, index: number, value: number) {
    super('non-finite-tensor', `${what}: element ${index} is ${value}; step refused`);
  }
}

/** Index of the first NaN/Inf in a, or −1. */
const firstNonFinite = (a: Float32Array): number => {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
};

/** A stage-local id for micro-batch m of step k, unique within a run. */
export const microId = (k: number, m: number, steps: MicroBatchData[][]): number =>
  k * Math.max(...steps.map((x) => x.length)) + m;

export class StageRunner {
  readonly stage: Stage;
  readonly replica: number;
  readonly transport: Transport;
  readonly topology: Topology;
  readonly opts: RunnerOptions;
  /** Compute time of the current run (busy share = busyMs / wall time). */
  busyMs = 0;
  /** This stage's squared gradient norm at the last update (asynchronous clipping uses the previous step's). */
  private lastSquaredNorm = NaN;

  constructor(stage: Stage, replica: number, transport: Transport, topology: Topology, opts: RunnerOptions) {
    this.stage = stage;
    this.replica = replica;
    this.transport = transport;
    this.topology = topology;
    this.opts = opts;
  }

  get id(): string {
    return workerId(this.stage.spec.index, this.replica);
  }

  private get s(): number {
    return this.stage.spec.index;
  }

  private codec(boundary: number): Codec | undefined {
    return this.opts.codecs?.[boundary];
  }

  /** The micro-batches of each step this replica serves: micro-batch m goes to replica m mod R. */
  mine(steps: MicroBatchData[][]): number[][] {
    const R = this.topology.replicas[this.s];
    return steps.map((micro) => micro.map((_, m) => m).filter((m) => m % R === this.replica));
  }

  /** Runs this worker's part of `ctx.steps`; rejects on a boundary NaN/Inf, a silent peer or an abort. */
  async run(ctx: RunContext): Promise<void> {
    const { gpu } = this.stage;
    const { steps, batch, seq, signal, base } = ctx;
    const s = this.s;
    const N = this.topology.stages;
    const C = this.stage.cfg.dModel;
    const rows = batch * seq;
    const sends: Promise<void>[] = [];
    const local: RunnerStep[] = steps.map(() => ({ losses: new Map(), maxDelay: 0, refused: false }));
    this.busyMs = 0;
    let version = 0;
    const recv = (k: number, m: number, kind: 'act' | 'grad' | 'audit' | 'auditlist') =>
      this.transport.receive(base + k, m, kind, {
        timeoutMs: this.opts.timeoutMs,
        signal,
        forgetBefore: base + version - 1,
      });
    const turn = this.turn(signal);
    /** Where the current unit's compute began (its turn's start: the wait for the device is not compute). */
    let unitStart = 0;
    const span = (op: OpSpan['op'], step: number, micro: number | undefined, startMs = unitStart) =>
      ctx.opts.trace?.push({ stage: s, replica: this.replica, op, step, micro, startMs, endMs: performance.now() });
    const auditing = this.auditing(ctx);
    /** Per step: the micro-batches duplicated to each replica of the next stage. */
    const duplicated = steps.map(() =>
      Array.from({ length: this.topology.replicas[s + 1] ?? 0 }, () => [] as number[]),
    );
    const encode = async (t: Tensor, k: number, m: number, kind: 'act' | 'grad', codec: Codec | undefined) => {
      const host = (await gpu.read(t)) as Float32Array;
      gpu.release(t);
      if (kind === 'act' && m % this.topology.replicas[s] === this.replica && this.opts.corrupt?.(base + k, m))
        for (let i = 0; i < host.length; i += 7) host[i] += 0.5;
      const bad = firstNonFinite(host);
      if (bad >= 0) throw new NonFiniteTensorError(`stage ${s} ${kind} output, micro-batch ${m}`, bad, host[bad]);
      const ids = steps[k][m].ids;
      return codec
        ? codec.encode(host, [rows, C], { ids, kind })
        : new Uint8Array(host.buffer, host.byteOffset, host.byteLength);
    };
    const ship = async (
      t: Tensor,
      k: number,
      m: number,
      kind: 'act' | 'grad',
      toStage: number,
      codec: Codec | undefined,
    ) => {
      const payload = await encode(t, k, m, kind, codec);
      const ids = steps[k][m].ids;
      const frame: Frame = {
        model: this.topology.model,
        fromStage: s,
        fromReplica: this.replica,
        step: base + k,
        micro: m,
        kind,
        shape: [rows, C],
        codec: codec?.name ?? 'none',
        payload,
        ids,
      };
      const R = this.topology.replicas[toStage];
      sends.push(this.transport.send(workerId(toStage, m % R), frame));
      if (kind === 'act' && auditing && R > 1 && this.opts.audit!.coin(base + k, m, 0) < this.opts.audit!.fraction) {
        // A sibling of the receiver, drawn by a second coin: the receiver cannot know who checks it.
        const verifier = ((m % R) + 1 + Math.floor(this.opts.audit!.coin(base + k, m, 1) * (R - 1))) % R;
        duplicated[k][verifier].push(m);
        sends.push(this.transport.send(workerId(toStage, verifier), { ...frame, kind: 'audit' }));
      }
      return payload;
    };
    const lastOwn = this.mine(steps).map((ms) => ms[ms.length - 1]);
    const sendAuditLists = (k: number) => {
      if (!auditing || s === N - 1 || this.topology.replicas[s + 1] < 2) return;
      duplicated[k].forEach((list, r) => {
        const frame: Frame = {
          model: this.topology.model,
          fromStage: s,
          fromReplica: this.replica,
          step: base + k,
          micro: this.replica,
          kind: 'auditlist',
          shape: [1, list.length],
          codec: 'none',
          payload: new Uint8Array(new Float32Array(list).buffer),
        };
        sends.push(this.transport.send(workerId(s + 1, r), frame));
      });
    };
    const inputHash = (k: number, m: number, f: Frame | undefined) =>
      f ? hashBytes(f.payload) : hashIds(steps[k][m].ids);
    const land = (f: Frame, k: number, m: number, kind: 'act' | 'grad', codec: Codec | undefined): Tensor => {
      if (f.shape[0] !== rows || f.shape[1] !== C)
        throw new ShapeError(
          `stage ${s}: ${kind} frame shape [${f.shape}] for micro-batch ${m}, expected [${rows}, ${C}]`,
        );
      if ((codec?.name ?? 'none') !== f.codec)
        throw new ShapeError(`stage ${s}: frame codec ${f.codec}, expected ${codec?.name ?? 'none'}`);
      const ids = steps[k][m].ids;
      const host = codec
        ? codec.decode(f.payload, [rows, C], { ids, kind })
        : new Float32Array(f.payload.slice().buffer, 0, rows * C);
      if (host.length !== rows * C)
        throw new ShapeError(`stage ${s}: ${kind} payload holds ${host.length} values, expected ${rows * C}`);
      const bad = firstNonFinite(host);
      if (bad >= 0) throw new NonFiniteTensorError(`stage ${s} received ${kind}, micro-batch ${m}`, bad, host[bad]);
      return gpu.upload(host, [rows, C]);
    };
    // Forwards that run `d` updates behind their step share one stashed (or look-ahead) weight set per d;
    // their backwards all come after the next update, so the sets of one version never outlive it.
    let stashes = new Map<number, WeightSet>();
    const lookAhead = ctx.opts.correction === 'nesterov' && ctx.opts.staleness > 0;
    for (const op of asyncOneFOneB(s, N, this.mine(steps), ctx.opts.staleness)) {
      if (op.op === 'F') {
        const { step: k, micro: m, delay } = op;
        const mb = steps[k][m];
        const frameIn = s > 0 ? await recv(k, m, 'act') : undefined;
        const sent = await turn(async () => {
          unitStart = performance.now();
          const input = frameIn && land(frameIn, k, m, 'act', this.codec(s - 1));
          let weights: WeightSet | undefined;
          if (delay > 0) {
            weights = stashes.get(delay) ?? this.stage.weightSet(lookAhead ? delay : 0);
            stashes.set(delay, weights);
            local[k].maxDelay = Math.max(local[k].maxDelay, delay);
          }
          const r = this.stage.forward(
            { id: microId(k, m, steps), batch, seq, ids: mb.ids, targets: mb.targets, input },
            weights,
          );
          if (r.loss) {
            const loss = (await gpu.read(r.loss))[0];
            // A cheating last stage has no activation to corrupt: it reports a wrong loss.
            local[k].losses.set(m, this.opts.corrupt?.(base + k, m) ? loss + 0.5 : loss);
            gpu.release(r.loss, r.logits);
          }
          return r.output ? ship(r.output, k, m, 'act', s + 1, this.codec(s)) : undefined;
        });
        this.opts.onWork?.({
          step: base + k,
          micro: m,
          kind: 'train',
          inputHash: inputHash(k, m, frameIn),
          outputHash: sent ? hashBytes(sent) : hashLoss(local[k].losses.get(m)!),
        });
        if (m === lastOwn[k]) sendAuditLists(k);
        span('F', k, m);
      } else if (op.op === 'B') {
        const { step: k, micro: m } = op;
        const frameIn = s < N - 1 ? await recv(k, m, 'grad') : undefined;
        await turn(async () => {
          unitStart = performance.now();
          const grad = frameIn && land(frameIn, k, m, 'grad', this.codec(s));
          const dx = this.stage.backward(microId(k, m, steps), grad, 1 / steps[k].length);
          await gpu.sync();
          if (dx) await ship(dx, k, m, 'grad', s - 1, this.codec(s - 1));
        });
        span('B', k, m);
      } else {
        const k = op.step;
        if (lastOwn[k] === undefined) sendAuditLists(k);
        if (auditing) await this.audit(k, ctx, recv, encode, inputHash, turn);
        await this.update(k, local[k], ctx, lookAhead, turn, (t0) => span('U', k, undefined, t0));
        ctx.onUpdate?.(k, local[k]);
        stashes = new Map();
        version++;
      }
    }
    await Promise.all(sends);
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

  /** Whether this run verifies by recomputation: synchronous (replicas share weights until the update) with a fraction > 0. */
  private auditing(ctx: RunContext): boolean {
    return ctx.opts.staleness === 0 && (this.opts.audit?.fraction ?? 0) > 0;
  }

  /**
   * Before update k (every replica of the stage still holds step k's weights): recompute the forwards this
   * worker was chosen to check — those the previous stage's workers duplicated here, or at stage 0 those its
   * own coin picks from replica r − 1 — and report each output hash as audit work.
   */
  private async audit(
    k: number,
    ctx: RunContext,
    recv: (k: number, m: number, kind: 'audit' | 'auditlist') => Promise<Frame>,
    encode: (t: Tensor, k: number, m: number, kind: 'act', codec: Codec | undefined) => Promise<Uint8Array>,
    inputHash: (k: number, m: number, f: Frame | undefined) => string,
    turn: Turn,
  ): Promise<void> {
    const s = this.s;
    const R = this.topology.replicas[s];
    if (R < 2) return;
    const { steps, batch, seq, base } = ctx;
    const todo: Array<{ m: number; frame?: Frame }> = [];
    if (s === 0) {
      const checked = (this.replica + R - 1) % R;
      for (let m = 0; m < steps[k].length; m++) {
        if (m % R === checked && this.opts.audit!.coin(base + k, m, 0) < this.opts.audit!.fraction) todo.push({ m });
      }
    } else {
      for (let u = 0; u < this.topology.replicas[s - 1]; u++) {
        const list = await recv(k, u, 'auditlist');
        if (list.payload.byteLength !== 4 * list.shape[1])
          throw new ShapeError(`stage ${s}: audit list from replica ${u} of stage ${s - 1} is malformed`);
        for (const m of new Float32Array(list.payload.slice().buffer)) {
          if (!Number.isInteger(m) || m < 0 || m >= steps[k].length || m % R === this.replica)
            throw new ShapeError(`stage ${s}: audit list names micro-batch ${m}, not a sibling's`);
          todo.push({ m, frame: await recv(k, m, 'audit') });
        }
      }
    }
    const { gpu } = this.stage;
    const rows = batch * seq;
    const C = this.stage.cfg.dModel;
    for (const { m, frame } of todo) {
      const mb = steps[k][m];
      let x: Tensor | undefined;
      if (frame) {
        const codec = this.codec(s - 1);
        if (frame.shape[0] !== rows || frame.shape[1] !== C || frame.codec !== (codec?.name ?? 'none'))
          throw new ShapeError(
            `stage ${s}: audit frame for micro-batch ${m} has shape [${frame.shape}] codec ${frame.codec}`,
          );
        const host = codec
          ? codec.decode(frame.payload, [rows, C], { ids: mb.ids, kind: 'act' })
          : new Float32Array(frame.payload.slice().buffer, 0, rows * C);
        const bad = firstNonFinite(host);
        if (bad >= 0) throw new NonFiniteTensorError(`stage ${s} audit input, micro-batch ${m}`, bad, host[bad]);
        x = gpu.upload(host, [rows, C]);
      }
      // An id no training micro-batch uses; discarded at once (an audit has no backward).
      const id = -1 - m;
      const outputHash = await turn(async () => {
        const r = this.stage.forward({ id, batch, seq, ids: mb.ids, targets: mb.targets, input: x });
        let hash: string;
        if (r.loss) {
          hash = hashLoss((await gpu.read(r.loss))[0]);
          gpu.release(r.loss, r.logits, r.output);
        } else {
          hash = hashBytes(await encode(r.output!, k, m, 'act', this.codec(s)));
        }
        this.stage.discard(id);
        return hash;
      });
      this.opts.onWork?.({ step: base + k, micro: m, kind: 'audit', inputHash: inputHash(k, m, frame), outputHash });
    }
  }

  /** Update U(k): replica all-reduce, clipping, AdamW, the afterStep hook. */
  private async update(
    k: number,
    result: RunnerStep,
    ctx: RunContext,
    remember: boolean,
    turn: Turn,
    span: (startMs: number) => void,
  ): Promise<void> {
    const { gpu } = this.stage;
    const frameStep = ctx.base + k;
    if (this.topology.replicas[this.s] > 1) await this.allReduce(frameStep, ctx.signal, turn);
    const synchronous = ctx.opts.staleness === 0;
    const clip = this.opts.clipNorm;
    let scale: Tensor | undefined;
    if (synchronous || clip) {
      const sq = await turn(async () => {
        const n = gradNorm(gpu, this.stage.grads());
        const x = (await gpu.read(n))[0] ** 2;
        gpu.release(n);
        return x;
      });
      await this.sendNorm(frameStep, sq);
      let norm: number;
      if (synchronous) {
        // Stages exchange one scalar per step, so clipping uses the global norm and a non-finite gradient
        // anywhere refuses the update everywhere.
        norm = Math.sqrt(await this.receiveNorms(frameStep, sq, ctx.signal));
        result.gradNorm = norm;
      } else {
        // Waiting for this step's norms would put the barrier back. The previous step's are already here
        // (every stage sent them before the activations this update follows), so clip with the global norm
        // of step k − 1; the run's first update clips each stage to clipNorm/√N, which bounds the global norm.
        const prev = k > 0 ? Math.sqrt(await this.receiveNorms(frameStep - 1, this.lastSquaredNorm, ctx.signal)) : NaN;
        norm = !Number.isFinite(sq) ? NaN : Number.isFinite(prev) ? prev : Math.sqrt(sq * this.topology.stages);
      }
      this.lastSquaredNorm = sq;
      if (!Number.isFinite(norm)) {
        this.stage.zeroGrads();
        result.refused = true;
        return;
      }
      if (clip && norm > clip) scale = gpu.upload([clip / (norm + 1e-6)], [1]);
    }
    let t0 = 0;
    await turn(async () => {
      t0 = performance.now();
      if (remember) this.stage.rememberWeights();
      const adam = ctx.opts.lr ? { ...this.opts.adam, lr: ctx.opts.lr(k) } : this.opts.adam;
      try {
        await this.stage.applyStep(adam, scale);
        this.opts.afterStep?.(this.stage);
      } catch (e) {
        if (!(e instanceof NonFiniteGradientError)) throw e;
        result.refused = true;
      } finally {
        gpu.release(scale);
      }
      await gpu.sync();
    });
    span(t0); // the update's own compute: the norm exchange's wait is not part of it
  }

  /** Replica 0 of each stage sends its stage's squared gradient norm to every worker of the other stages. */
  private async sendNorm(step: number, sq: number): Promise<void> {
    const { stages, replicas, model } = this.topology;
    const s = this.s;
    if (this.replica !== 0 || stages === 1) return;
    const frame: Frame = {
      model,
      fromStage: s,
      fromReplica: 0,
      step,
      micro: s,
      kind: 'norm',
      shape: [1, 1],
      codec: 'f64',
      payload: new Uint8Array(new Float64Array([sq]).buffer),
    };
    const to = Array.from({ length: stages }, (_, t) => t)
      .filter((t) => t !== s)
      .flatMap((t) => Array.from({ length: replicas[t] }, (_, r) => workerId(t, r)));
    await Promise.all(to.map((id) => this.transport.send(id, frame)));
  }

  /**
   * The sum of every stage's squared gradient norm at `step` (this stage's is `own`; replicas hold identical
   * gradients after the all-reduce), added in stage order so every worker gets the same total.
   */
  private async receiveNorms(step: number, own: number, signal: AbortSignal): Promise<number> {
    let total = 0;
    for (let t = 0; t < this.topology.stages; t++) {
      if (t === this.s) total += own;
      else {
        const f = await this.transport.receive(step, t, 'norm', { timeoutMs: this.opts.timeoutMs, signal });
        if (f.payload.byteLength !== 8)
          throw new ShapeError(
            `stage ${this.s}: norm frame from stage ${t} holds ${f.payload.byteLength} bytes, expected 8`,
          );
        total += new Float64Array(f.payload.slice().buffer)[0];
      }
    }
    return total;
  }

  /**
   * Sums the gradients of the replicas of this stage: every replica sends its gradients to every other one
   * and adds all contributions in replica order, so every replica ends with bit-identical gradients.
   */
  private async allReduce(step: number, signal: AbortSignal, turn: Turn): Promise<void> {
    const { gpu } = this.stage;
    const s = this.s;
    const R = this.topology.replicas[s];
    const grads = await turn(() => this.stage.readGrads());
    const names = [...grads.keys()];
    const total = names.reduce((a, n) => a + grads.get(n)!.length, 0);
    const flat = new Float32Array(total);
    let at = 0;
    for (const n of names) {
      flat.set(grads.get(n)!, at);
      at += grads.get(n)!.length;
    }
    const frame: Frame = {
      model: this.topology.model,
      fromStage: s,
      fromReplica: this.replica,
      step,
      micro: this.replica,
      kind: 'gradsync',
      shape: [1, total],
      codec: 'none',
      payload: new Uint8Array(flat.buffer),
    };
    const others = Array.from({ length: R }, (_, r) => r).filter((r) => r !== this.replica);
    await Promise.all(others.map((r) => this.transport.send(workerId(s, r), frame)));
    const sum = new Float32Array(total);
    for (let r = 0; r < R; r++) {
      let part = flat;
      if (r !== this.replica) {
        const f = await this.transport.receive(step, r, 'gradsync', { timeoutMs: this.opts.timeoutMs, signal });
        if (f.shape[1] !== total || f.payload.byteLength !== 4 * total)
          throw new ShapeError(
            `stage ${s}: gradient sync from replica ${r} has ${f.shape[1]} values, expected ${total}`,
          );
        part = new Float32Array(f.payload.slice().buffer);
      }
      for (let i = 0; i < total; i++) sum[i] += part[i];
    }
    await turn(() => {
      at = 0;
      for (const n of names) {
        const slot = this.stage.slots.get(n)!;
        gpu.write(slot.grad, sum.subarray(at, at + slot.grad.size));
        at += slot.grad.size;
      }
    });
  }
}
