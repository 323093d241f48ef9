/**
 * A stage worker's update U(k): the replica all-reduce (gradsync frames), the cross-stage gradient-norm exchange
 * (norm frames) for clipping, then AdamW. It outlives single runs: asynchronous clipping uses the previous
 * step's global norm, which may belong to the previous run.
 */
import type { Tensor } from '../gpu/index.ts';
import { NonFiniteGradientError } from '../model/stage.ts';
import { gradNorm } from '../ops/gradclip.ts';
import { decodeList, decodeScalar, scalarBody } from './frame-body.ts';
import type { RunContext, RunnerStep, StageRunner } from './stage-runner.ts';
import { workerId, type Frame } from './transport.ts';

/** One unit of GPU work (see StageRunner's turns). */
export type Turn = <T>(f: () => Promise<T> | T) => Promise<T>;

export class StageUpdate {
  private readonly runner: StageRunner;
  /** This stage's squared gradient norm at the last update (asynchronous clipping uses the previous step's). */
  private lastSquaredNorm = NaN;

  constructor(runner: StageRunner) {
    this.runner = runner;
  }

  private get s(): number {
    return this.runner.stage.spec.index;
  }

  private get where(): string {
    return `stage ${this.s}`;
  }

  /** Update U(k): replica all-reduce, clipping, AdamW, the afterStep hook; `span` gets the start of its own compute. */
  async apply(
    k: number,
    result: RunnerStep,
    ctx: RunContext,
    remember: boolean,
    turn: Turn,
    span: (startMs: number) => void,
  ): Promise<void> {
    const { stage, topology, opts } = this.runner;
    const { gpu } = stage;
    const frameStep = ctx.base + k;
    if (topology.replicas[this.s] > 1) await this.allReduce(frameStep, ctx.signal, turn);
    const synchronous = ctx.opts.staleness === 0;
    const clip = opts.clipNorm;
    let scale: Tensor | undefined;
    if (synchronous || clip) {
      const sq = await turn(async () => {
        const n = gradNorm(gpu, stage.grads());
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
        norm = !Number.isFinite(sq) ? NaN : Number.isFinite(prev) ? prev : Math.sqrt(sq * topology.stages);
      }
      this.lastSquaredNorm = sq;
      if (!Number.isFinite(norm)) {
        stage.zeroGrads();
        result.refused = true;
        return;
      }
      if (clip && norm > clip) scale = gpu.upload([clip / (norm + 1e-6)], [1]);
    }
    let t0 = 0;
    await turn(async () => {
      t0 = performance.now();
      if (remember) stage.rememberWeights();
      const adam = ctx.opts.lr ? { ...opts.adam, lr: ctx.opts.lr(k) } : opts.adam;
      try {
        await stage.applyStep(adam, scale);
        opts.afterStep?.(stage);
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

  /** A frame of this worker's, of a kind whose body is given. */
  private frame(
    step: number,
    micro: number,
    kind: 'gradsync' | 'norm',
    body: Pick<Frame, 'shape' | 'codec' | 'payload'>,
  ) {
    const { topology, replica } = this.runner;
    return { model: topology.model, fromStage: this.s, fromReplica: replica, step, micro, kind, ...body };
  }

  /** Replica 0 of each stage sends its stage's squared gradient norm to every worker of the other stages. */
  private async sendNorm(step: number, sq: number): Promise<void> {
    const { stages, replicas } = this.runner.topology;
    const s = this.s;
    if (this.runner.replica !== 0 || stages === 1) return;
    const frame = this.frame(step, s, 'norm', scalarBody(sq));
    const to = Array.from({ length: stages }, (_, t) => t)
      .filter((t) => t !== s)
      .flatMap((t) => Array.from({ length: replicas[t] }, (_, r) => workerId(t, r)));
    await Promise.all(to.map((id) => this.runner.transport.send(id, frame)));
  }

  /**
   * The sum of every stage's squared gradient norm at `step` (this stage's is `own`; replicas hold identical
   * gradients after the all-reduce), added in stage order so every worker gets the same total.
   */
  private async receiveNorms(step: number, own: number, signal: AbortSignal): Promise<number> {
    const { transport, opts, topology } = this.runner;
    let total = 0;
    for (let t = 0; t < topology.stages; t++) {
      if (t === this.s) total += own;
      else {
        const f = await transport.receive(step, t, 'norm', { timeoutMs: opts.timeoutMs, signal });
        total += decodeScalar(f, `${this.where}: norm from stage ${t}`);
      }
    }
    return total;
  }

  /**
   * Sums the gradients of the replicas of this stage: every replica sends its gradients to every other one
   * and adds all contributions in replica order, so every replica ends with bit-identical gradients.
   */
  private async allReduce(step: number, signal: AbortSignal, turn: Turn): Promise<void> {
    const { stage, replica, transport, opts, topology } = this.runner;
    const { gpu } = stage;
    const s = this.s;
    const R = topology.replicas[s];
    const grads = await turn(() => stage.readGrads());
    const names = [...grads.keys()];
    const total = names.reduce((a, n) => a + grads.get(n)!.length, 0);
    const flat = new Float32Array(total);
    let at = 0;
    for (const n of names) {
      flat.set(grads.get(n)!, at);
      at += grads.get(n)!.length;
    }
    const frame = this.frame(step, replica, 'gradsync', {
      shape: [1, total],
      codec: 'none',
      payload: new Uint8Array(flat.buffer),
    });
    const others = Array.from({ length: R }, (_, r) => r).filter((r) => r !== replica);
    await Promise.all(others.map((r) => transport.send(workerId(s, r), frame)));
    const sum = new Float32Array(total);
    for (let r = 0; r < R; r++) {
      let part: Float32Array = flat;
      if (r !== replica) {
        const f = await transport.receive(step, r, 'gradsync', { timeoutMs: opts.timeoutMs, signal });
        part = decodeList(f, `${this.where}: gradient sync from replica ${r}`, total);
      }
      for (let i = 0; i < total; i++) sum[i] += part[i];
    }
    await turn(() => {
      at = 0;
      for (const n of names) {
        const slot = stage.slots.get(n)!;
        gpu.write(slot.grad, sum.subarray(at, at + slot.grad.size));
        at += slot.grad.size;
      }
    });
  }
}
