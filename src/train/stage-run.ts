/**
 * One call of StageRunner.run: the state of a run (its sends in flight, per-step results, stashed weights, the
 * audit copies it made) and one method per schedule operation — forward, backward, update — plus the audits
 * that precede an update. Every frame it receives is decoded by frame-body.ts.
 */
import type { Tensor } from '../gpu/index.ts';
import type { WeightSet } from '../model/stage.ts';
import { decodeList, decodeTensor, encodeTensor, listBody, requireFinite } from './frame-body.ts';
import { boundaryOf, type FrameKind } from './frame-kinds.ts';
import { asyncOneFOneB } from './schedule.ts';
import type { MicroBatchData, OpSpan, RunContext, RunnerStep, StageRunner } from './stage-runner.ts';
import type { StageUpdate, Turn } from './stage-update.ts';
import { FrameError, workerId, type Frame } from './transport.ts';
import { hashBytes, hashIds, hashLoss } from './work.ts';

/** A stage-local id for micro-batch m of step k, unique within a run. */
export const microId = (k: number, m: number, steps: MicroBatchData[][]): number =>
  k * Math.max(...steps.map((x) => x.length)) + m;

export class StageRun {
  private readonly runner: StageRunner;
  private readonly ctx: RunContext;
  private readonly updater: StageUpdate;
  private readonly turn: Turn;
  private readonly s: number;
  private readonly rows: number;
  private readonly width: number;
  /** What this worker saw of each step. */
  private readonly local: RunnerStep[];
  private readonly sends: Promise<void>[] = [];
  /** The last own micro-batch of each step (undefined: none), after whose forward the audit lists go. */
  private readonly lastOwn: (number | undefined)[];
  /** Per step: the micro-batches duplicated to each replica of the next stage. */
  private readonly duplicated: number[][][];
  private readonly auditing: boolean;
  /** Stale forwards run on the look-ahead weights (Nesterov-style correction) rather than a plain stash. */
  private readonly lookAhead: boolean;
  /** Updates applied in this run: frames of steps before base + version − 1 are finished. */
  private version = 0;
  /**
   * Forwards that run `d` updates behind their step share one stashed (or look-ahead) weight set per d; their
   * backwards all come after the next update, so the sets of one version never outlive it.
   */
  private stashes = new Map<number, WeightSet>();
  /** Where the current unit's compute began (its turn's start: the wait for the device is not compute). */
  private unitStart = 0;

  constructor(runner: StageRunner, ctx: RunContext, updater: StageUpdate, turn: Turn, auditing: boolean) {
    this.runner = runner;
    this.ctx = ctx;
    this.updater = updater;
    this.turn = turn;
    this.auditing = auditing;
    this.s = runner.stage.spec.index;
    this.rows = ctx.batch * ctx.seq;
    this.width = runner.stage.cfg.dModel;
    this.local = ctx.steps.map(() => ({ losses: new Map(), maxDelay: 0, refused: false }));
    this.lastOwn = runner.mine(ctx.steps).map((ms) => ms[ms.length - 1]);
    const next = runner.topology.replicas[this.s + 1] ?? 0;
    this.duplicated = ctx.steps.map(() => Array.from({ length: next }, () => [] as number[]));
    this.lookAhead = ctx.opts.correction === 'nesterov' && ctx.opts.staleness > 0;
  }

  /** Runs the schedule; rejects on a boundary NaN/Inf, a refused frame, a silent peer or an abort. */
  async execute(): Promise<void> {
    const { topology } = this.runner;
    const mine = this.runner.mine(this.ctx.steps);
    for (const op of asyncOneFOneB(this.s, topology.stages, mine, this.ctx.opts.staleness)) {
      if (op.op === 'F') await this.forward(op.step, op.micro, op.delay);
      else if (op.op === 'B') await this.backward(op.step, op.micro);
      else await this.update(op.step);
    }
    await Promise.all(this.sends);
  }

  private get opts() {
    return this.runner.opts;
  }

  private get where(): string {
    return `stage ${this.s}`;
  }

  private get isLast(): boolean {
    return this.s === this.runner.topology.stages - 1;
  }

  /** F(k, m): receive the input (stage > 0), run the forward on the weights of its delay, send the output on. */
  private async forward(k: number, m: number, delay: number): Promise<void> {
    const { stage } = this.runner;
    const { gpu } = stage;
    const mb = this.ctx.steps[k][m];
    const frameIn = this.s > 0 ? await this.receive(k, m, 'act') : undefined;
    const sent = await this.unit(async () => {
      const input = frameIn && this.land(frameIn, k);
      const r = stage.forward(
        {
          id: microId(k, m, this.ctx.steps),
          batch: this.ctx.batch,
          seq: this.ctx.seq,
          ids: mb.ids,
          targets: mb.targets,
          input,
        },
        this.weightsFor(k, delay),
      );
      if (r.loss) {
        const loss = (await gpu.read(r.loss))[0];
        // A cheating last stage has no activation to corrupt: it reports a wrong loss.
        this.local[k].losses.set(m, this.opts.corrupt?.(this.ctx.base + k, m) ? loss + 0.5 : loss);
        gpu.release(r.loss, r.logits);
      }
      return r.output ? this.ship(r.output, k, m, 'act') : undefined;
    });
    this.opts.onWork?.({
      step: this.ctx.base + k,
      micro: m,
      kind: 'train',
      inputHash: this.inputHash(k, m, frameIn),
      outputHash: sent ? hashBytes(sent) : hashLoss(this.local[k].losses.get(m)!),
    });
    if (m === this.lastOwn[k]) this.sendAuditLists(k);
    this.span('F', k, m);
  }

  /** The weights a forward `delay` updates behind its step runs on (undefined: the current ones). */
  private weightsFor(k: number, delay: number): WeightSet | undefined {
    if (delay === 0) return undefined;
    const weights = this.stashes.get(delay) ?? this.runner.stage.weightSet(this.lookAhead ? delay : 0);
    this.stashes.set(delay, weights);
    this.local[k].maxDelay = Math.max(this.local[k].maxDelay, delay);
    return weights;
  }

  /** B(k, m): receive the output gradient (all but the last stage), run the backward, send the input gradient back. */
  private async backward(k: number, m: number): Promise<void> {
    const { stage } = this.runner;
    const frameIn = this.isLast ? undefined : await this.receive(k, m, 'grad');
    await this.unit(async () => {
      const grad = frameIn && this.land(frameIn, k);
      const dx = stage.backward(microId(k, m, this.ctx.steps), grad, 1 / this.ctx.steps[k].length);
      await stage.gpu.sync();
      if (dx) await this.ship(dx, k, m, 'grad');
    });
    this.span('B', k, m);
  }

  /** U(k): the audits of step k (every replica still holds its weights), then the update. */
  private async update(k: number): Promise<void> {
    if (this.lastOwn[k] === undefined) this.sendAuditLists(k);
    if (this.auditing) await this.audit(k);
    const span = (t0: number) => this.span('U', k, undefined, t0);
    await this.updater.apply(k, this.local[k], this.ctx, this.lookAhead, this.turn, span);
    this.ctx.onUpdate?.(k, this.local[k]);
    this.stashes = new Map();
    this.version++;
  }

  /** One unit of GPU work whose compute starts when its turn does. */
  private unit<T>(f: () => Promise<T>): Promise<T> {
    return this.turn(() => {
      this.unitStart = performance.now();
      return f();
    });
  }

  private span(op: OpSpan['op'], step: number, micro: number | undefined, startMs = this.unitStart): void {
    const { stage, replica } = this.runner;
    this.ctx.opts.trace?.push({
      stage: stage.spec.index,
      replica,
      op,
      step,
      micro,
      startMs,
      endMs: performance.now(),
    });
  }

  private receive(k: number, m: number, kind: FrameKind): Promise<Frame> {
    return this.runner.transport.receive(this.ctx.base + k, m, kind, {
      timeoutMs: this.opts.timeoutMs,
      signal: this.ctx.signal,
      forgetBefore: this.ctx.base + this.version - 1,
    });
  }

  /** A received tensor frame (act, grad, audit) on the GPU: the one way in for every boundary tensor. */
  private land(f: Frame, k: number): Tensor {
    const codec = this.runner.codec(boundaryOf(f.kind, this.s));
    const ids = this.ctx.steps[k][f.micro].ids;
    const host = decodeTensor(f, { rows: this.rows, width: this.width, codec, ids, where: this.where });
    return this.runner.stage.gpu.upload(host, [this.rows, this.width]);
  }

  /** A forward output or input gradient as payload bytes: read back, corrupted where asked, checked finite, encoded. */
  private async encode(t: Tensor, k: number, m: number, kind: 'act' | 'grad'): Promise<Uint8Array> {
    const { gpu } = this.runner.stage;
    const { topology, replica } = this.runner;
    const host = (await gpu.read(t)) as Float32Array;
    gpu.release(t);
    const own = m % topology.replicas[this.s] === replica;
    if (kind === 'act' && own && this.opts.corrupt?.(this.ctx.base + k, m))
      for (let i = 0; i < host.length; i += 7) host[i] += 0.5;
    requireFinite(host, `${this.where} ${kind} output, micro-batch ${m}`);
    const codec = this.runner.codec(this.outgoingBoundary(kind));
    return encodeTensor(host, kind, { rows: this.rows, width: this.width, codec, ids: this.ctx.steps[k][m].ids });
  }

  /** The boundary an outgoing tensor crosses: activations forward to stage s + 1, gradients back to s − 1. */
  private outgoingBoundary(kind: 'act' | 'grad'): number {
    return kind === 'act' ? this.s : this.s - 1;
  }

  /** Sends a forward output on (with an audit copy where the coins say so) or an input gradient back. */
  private async ship(t: Tensor, k: number, m: number, kind: 'act' | 'grad'): Promise<Uint8Array> {
    const { topology, transport } = this.runner;
    const payload = await this.encode(t, k, m, kind);
    const toStage = kind === 'act' ? this.s + 1 : this.s - 1;
    const frame = this.frame(k, m, kind, {
      shape: [this.rows, this.width],
      codec: this.runner.codec(this.outgoingBoundary(kind))?.name ?? 'none',
      payload,
    });
    frame.ids = this.ctx.steps[k][m].ids;
    const R = topology.replicas[toStage];
    this.sends.push(transport.send(workerId(toStage, m % R), frame));
    const audit = this.opts.audit;
    const step = this.ctx.base + k;
    if (kind === 'act' && this.auditing && audit && R > 1 && audit.coin(step, m, 0) < audit.fraction) {
      // A sibling of the receiver, drawn by a second coin: the receiver cannot know who checks it.
      const verifier = ((m % R) + 1 + Math.floor(audit.coin(step, m, 1) * (R - 1))) % R;
      this.duplicated[k][verifier].push(m);
      this.sends.push(transport.send(workerId(toStage, verifier), { ...frame, kind: 'audit' }));
    }
    return payload;
  }

  /** Tells each replica of the next stage which of this step's micro-batches it must recompute. */
  private sendAuditLists(k: number): void {
    const { topology, transport, replica } = this.runner;
    if (!this.auditing || this.isLast || topology.replicas[this.s + 1] < 2) return;
    this.duplicated[k].forEach((list, r) => {
      const frame = this.frame(k, replica, 'auditlist', listBody(list));
      this.sends.push(transport.send(workerId(this.s + 1, r), frame));
    });
  }

  private frame(k: number, micro: number, kind: FrameKind, body: Pick<Frame, 'shape' | 'codec' | 'payload'>): Frame {
    const { topology, replica } = this.runner;
    return {
      model: topology.model,
      fromStage: this.s,
      fromReplica: replica,
      step: this.ctx.base + k,
      micro,
      kind,
      ...body,
    };
  }

  private inputHash(k: number, m: number, f: Frame | undefined): string {
    return f ? hashBytes(f.payload) : hashIds(this.ctx.steps[k][m].ids);
  }

  /**
   * Before update k (every replica of the stage still holds step k's weights): recompute the forwards this
   * worker was chosen to check and report each output hash as audit work.
   */
  private async audit(k: number): Promise<void> {
    if (this.runner.topology.replicas[this.s] < 2) return;
    for (const { m, frame } of await this.auditsOf(k)) {
      const outputHash = await this.turn(() => this.recompute(k, m, frame));
      this.opts.onWork?.({
        step: this.ctx.base + k,
        micro: m,
        kind: 'audit',
        inputHash: this.inputHash(k, m, frame),
        outputHash,
      });
    }
  }

  /**
   * The micro-batches to recompute at step k: those the previous stage's workers duplicated here (with their
   * audit frames), or at stage 0 those this worker's own coin picks from replica r − 1's.
   */
  private async auditsOf(k: number): Promise<Array<{ m: number; frame?: Frame }>> {
    const { topology, replica } = this.runner;
    const R = topology.replicas[this.s];
    const step = this.ctx.base + k;
    const micros = this.ctx.steps[k].length;
    const todo: Array<{ m: number; frame?: Frame }> = [];
    if (this.s === 0) {
      const checked = (replica + R - 1) % R;
      const audit = this.opts.audit!;
      for (let m = 0; m < micros; m++)
        if (m % R === checked && audit.coin(step, m, 0) < audit.fraction) todo.push({ m });
      return todo;
    }
    for (let u = 0; u < topology.replicas[this.s - 1]; u++) {
      const list = await this.receive(k, u, 'auditlist');
      for (const m of decodeList(list, `${this.where}: audit list from replica ${u} of stage ${this.s - 1}`)) {
        if (!Number.isInteger(m) || m < 0 || m >= micros || m % R === replica)
          throw new FrameError(`${this.where}: audit list names micro-batch ${m}, not a sibling's`);
        todo.push({ m, frame: await this.receive(k, m, 'audit') });
      }
    }
    return todo;
  }

  /** Recomputes the forward of micro-batch m (input from `frame`, or the ids at stage 0); the output's hash. */
  private async recompute(k: number, m: number, frame: Frame | undefined): Promise<string> {
    const { stage } = this.runner;
    const { gpu } = stage;
    const input = frame && this.land(frame, k);
    const mb = this.ctx.steps[k][m];
    // An id no training micro-batch uses; discarded at once (an audit has no backward).
    const id = -1 - m;
    const r = stage.forward({ id, batch: this.ctx.batch, seq: this.ctx.seq, ids: mb.ids, targets: mb.targets, input });
    let hash: string;
    if (r.loss) {
      hash = hashLoss((await gpu.read(r.loss))[0]);
      gpu.release(r.loss, r.logits, r.output);
    } else {
      hash = hashBytes(await this.encode(r.output!, k, m, 'act'));
    }
    stage.discard(id);
    return hash;
  }
}
