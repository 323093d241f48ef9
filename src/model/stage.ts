import { ShapeError, TesseraGpuError, type Gpu, type Tensor } from '../gpu/index.ts';
import { adamwStep, type AdamWConfig } from '../ops/adamw.ts';
import { attention, attentionBackward, type AttentionDims } from '../ops/attention.ts';
import { crossEntropy } from '../ops/crossentropy.ts';
import { embedding, embeddingBackward } from '../ops/embedding.ts';
import { gelu, geluBackward } from '../ops/gelu.ts';
import { gradNorm, scaleInPlace } from '../ops/gradclip.ts';
import { layernorm, layernormBackward } from '../ops/layernorm.ts';
import { linearBackward, linearForward, matmul } from '../ops/matmul.ts';
import { addInPlace } from '../ops/residual.ts';
import { validateConfig, type ModelConfig } from './config.ts';
import { initParam, stageParamSpecs, type ParamSpec } from './params.ts';
import type { StageSpec } from './stages.ts';

/** One micro-batch as a stage sees it. */
export interface MicroBatch {
  /** Caller-chosen id; backward(id) pairs with forward(id). */
  id: number;
  batch: number;
  seq: number;
  /** Token ids [batch·seq] on the host: stage 0 embeds them. */
  ids?: Int32Array;
  /** Next-token targets [batch·seq] on the host: the last stage's loss (ignore index −1). */
  targets?: Int32Array;
  /** Activations [batch·seq, dModel] from the previous stage (stages > 0). The stage takes ownership. */
  input?: Tensor;
}

/** A gradient update was refused (NaN/Inf gradient): weights and optimizer state are unchanged. */
export class NonFiniteGradientError extends TesseraGpuError {
  constructor(norm: number) {
    super('non-finite-gradient', `gradient norm is ${norm}: update refused, weights and optimizer state unchanged`);
  }
}

interface Slot {
  spec: ParamSpec;
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
}

interface LnOut {
  y: Tensor;
  mean: Tensor;
  rstd: Tensor;
}
interface BlockCache {
  x: Tensor;
  ln1: LnOut;
  qkv: Tensor;
  att: Tensor;
  lse: Tensor;
  x1: Tensor;
  ln2: LnOut;
  fc: Tensor;
  g: Tensor;
}
interface HeadCache {
  x: Tensor;
  lnf: LnOut;
  dlogits: Tensor;
}
interface Cache {
  mb: MicroBatch;
  blocks: BlockCache[];
  head?: HeadCache;
  weights?: WeightSet;
}

/**
 * Weights a forward ran with that are not the stage's live ones (asynchronous training): kept until the
 * micro-batch's backward, which must use the same weights (PipeDream's weight stashing), then released.
 */
export interface WeightSet {
  readonly tensors: Map<string, Tensor>;
  /** Micro-batches whose forward used this set and whose backward has not run yet. */
  users: number;
}

/**
 * A pipeline stage on the GPU: its parameters, gradient accumulators and AdamW moments, and forward/backward
 * over micro-batches. Several micro-batches may be in flight (1F1B keeps up to N of them): each forward
 * caches what its backward needs, keyed by micro-batch id. Gradients accumulate until step().
 */
export class Stage {
  readonly gpu: Gpu;
  readonly cfg: ModelConfig;
  readonly spec: StageSpec;
  readonly slots = new Map<string, Slot>();
  private readonly caches = new Map<number, Cache>();
  /** The weights before the last update (asynchronous look-ahead only). */
  private previous?: Map<string, Tensor>;
  /** Optimizer steps applied so far (AdamW bias correction uses step + 1). */
  step = 0;

  private constructor(gpu: Gpu, cfg: ModelConfig, spec: StageSpec) {
    this.gpu = gpu;
    this.cfg = cfg;
    this.spec = spec;
  }

  /** Creates the stage with seeded initial weights, or with `weights` (e.g. loaded from safetensors). */
  static create(gpu: Gpu, cfg: ModelConfig, spec: StageSpec, weights?: Map<string, Float32Array>): Stage {
    validateConfig(cfg, gpu.limits);
    const stage = new Stage(gpu, cfg, spec);
    for (const ps of stageParamSpecs(cfg, spec)) {
      const given = weights?.get(ps.name);
      const data = given ?? initParam(ps, cfg.seed ?? 0);
      const n = ps.shape.reduce((a, b) => a * b, 1);
      if (data.length !== n) throw new ShapeError(`weight ${ps.name}: ${data.length} values for shape [${ps.shape}]`);
      stage.slots.set(ps.name, {
        spec: ps,
        param: gpu.upload(data, ps.shape, 'f32', ps.name),
        grad: gpu.zeros(ps.shape, 'f32', `grad.${ps.name}`),
        m: gpu.zeros(ps.shape, 'f32', `m.${ps.name}`),
        v: gpu.zeros(ps.shape, 'f32', `v.${ps.name}`),
      });
    }
    return stage;
  }

  /** Parameter `name` as a forward/backward uses it: from the micro-batch's weight set, else the live one. */
  private p(name: string, weights?: WeightSet): Tensor {
    return weights?.tensors.get(name) ?? this.slots.get(name)!.param;
  }
  private g(name: string): Tensor {
    return this.slots.get(name)!.grad;
  }

  get inFlight(): number {
    return this.caches.size;
  }

  /**
   * Forward of one micro-batch. Returns the activations for the next stage, or, on the last stage, the
   * mean cross-entropy loss [1] and logits [batch·seq, vocab] (the caller owns and releases them).
   */
  forward(mb: MicroBatch, weights?: WeightSet): { output?: Tensor; loss?: Tensor; logits?: Tensor } {
    const { gpu, cfg, spec } = this;
    if (this.caches.has(mb.id)) throw new ShapeError(`stage ${spec.index}: micro-batch ${mb.id} is already in flight`);
    if (weights && weights.tensors.size !== this.slots.size)
      throw new ShapeError(
        `stage ${spec.index}: weight set holds ${weights.tensors.size} of ${this.slots.size} tensors (already ` +
          `released?)`,
      );
    const P = (name: string): Tensor => this.p(name, weights);
    const rows = mb.batch * mb.seq;
    if (mb.seq > cfg.context)
      throw new ShapeError(`stage ${spec.index}: seq ${mb.seq} exceeds the context ${cfg.context}`);
    let x: Tensor;
    if (spec.hasEmbedding) {
      if (!mb.ids || mb.ids.length !== rows)
        throw new ShapeError(`stage 0 needs ${rows} token ids, got ${mb.ids?.length ?? 'none'}`);
      const ids = gpu.upload(mb.ids, [rows], 'i32', 'ids');
      x = embedding(gpu, ids, P('wte'), P('wpe'), { batch: mb.batch, seq: mb.seq });
      gpu.release(ids);
    } else {
      if (!mb.input) throw new ShapeError(`stage ${spec.index} needs input activations`);
      if (mb.input.shape.length !== 2 || mb.input.shape[0] !== rows || mb.input.shape[1] !== cfg.dModel) {
        throw new ShapeError(`stage ${spec.index}: input must be [${rows}, ${cfg.dModel}], got [${mb.input.shape}]`);
      }
      x = mb.input;
    }
    const cache: Cache = { mb, blocks: [], weights };
    if (weights) weights.users++;
    const dims: AttentionDims = { batch: mb.batch, seq: mb.seq, heads: cfg.heads };
    for (let l = spec.firstLayer; l < spec.endLayer; l++) {
      const h = `h.${l}`;
      const ln1 = layernorm(gpu, x, P(`${h}.ln1.w`), P(`${h}.ln1.b`));
      const qkv = linearForward(gpu, ln1.y, P(`${h}.attn.qkv.w`), P(`${h}.attn.qkv.b`));
      const { out: att, lse } = attention(gpu, qkv, dims);
      const x1 = linearForward(gpu, att, P(`${h}.attn.proj.w`), P(`${h}.attn.proj.b`));
      addInPlace(gpu, x1, x);
      const ln2 = layernorm(gpu, x1, P(`${h}.ln2.w`), P(`${h}.ln2.b`));
      const fc = linearForward(gpu, ln2.y, P(`${h}.mlp.fc.w`), P(`${h}.mlp.fc.b`));
      const g = gelu(gpu, fc);
      const x2 = linearForward(gpu, g, P(`${h}.mlp.proj.w`), P(`${h}.mlp.proj.b`));
      addInPlace(gpu, x2, x1);
      cache.blocks.push({ x, ln1, qkv, att, lse, x1, ln2, fc, g });
      x = x2;
    }
    this.caches.set(mb.id, cache);
    if (!spec.hasHead) return { output: x };
    if (!mb.targets || mb.targets.length !== rows)
      throw new ShapeError(`the last stage needs ${rows} targets, got ${mb.targets?.length ?? 'none'}`);
    const lnf = layernorm(gpu, x, P('lnf.w'), P('lnf.b'));
    const logits = matmul(gpu, lnf.y, P('head.w'));
    const targets = gpu.upload(mb.targets, [rows], 'i32', 'targets');
    const ce = crossEntropy(gpu, logits, targets);
    gpu.release(targets, ce.losses);
    cache.head = { x, lnf, dlogits: ce.dlogits! };
    return { loss: ce.loss, logits };
  }

  /**
   * Backward of micro-batch `id`. Middle/first stages take the gradient of their output (ownership passes
   * to the stage); the last stage uses the loss gradient saved by forward, scaled by `lossScale` (1/M to
   * average M micro-batches). Returns the gradient of the input activations (none on stage 0).
   */
  backward(id: number, gradOutput?: Tensor, lossScale = 1): Tensor | undefined {
    const { gpu, spec, cfg } = this;
    const cache = this.caches.get(id);
    if (!cache)
      throw new ShapeError(`stage ${spec.index}: backward for micro-batch ${id}, which has no forward in flight`);
    this.caches.delete(id);
    const { mb, weights } = cache;
    const P = (name: string): Tensor => this.p(name, weights);
    const rows = mb.batch * mb.seq;
    let dx: Tensor;
    if (spec.hasHead) {
      const { x: xHead, lnf, dlogits } = cache.head!;
      if (lossScale !== 1) {
        const s = gpu.upload([lossScale], [1], 'f32');
        scaleInPlace(gpu, dlogits, s);
        gpu.release(s);
      }
      matmul(gpu, lnf.y, dlogits, { transA: true, accumulate: this.g('head.w') });
      const dlnf = matmul(gpu, dlogits, P('head.w'), { transB: true });
      const b = layernormBackward(gpu, xHead, P('lnf.w'), lnf.mean, lnf.rstd, dlnf);
      this.accumulate('lnf.w', b.dgamma);
      this.accumulate('lnf.b', b.dbeta);
      dx = b.dx;
      // xHead is the last block's output, or (no blocks) the stage input / embedding output: ours either way.
      gpu.release(dlogits, dlnf, lnf.y, lnf.mean, lnf.rstd, xHead);
    } else {
      if (!gradOutput || gradOutput.shape[0] !== rows || gradOutput.shape[1] !== cfg.dModel) {
        throw new ShapeError(
          `stage ${spec.index}: output gradient must be [${rows}, ${cfg.dModel}], got [${gradOutput?.shape ?? 'none'}]`,
        );
      }
      dx = gradOutput;
    }
    const dims: AttentionDims = { batch: mb.batch, seq: mb.seq, heads: cfg.heads };
    for (let l = spec.endLayer - 1; l >= spec.firstLayer; l--) {
      const h = `h.${l}`;
      const c = cache.blocks[l - spec.firstLayer];
      // MLP: x2 = x1 + proj(gelu(fc(ln2(x1))))
      const mp = linearBackward(gpu, c.g, P(`${h}.mlp.proj.w`), dx, {
        accumulate: { dw: this.g(`${h}.mlp.proj.w`), db: this.g(`${h}.mlp.proj.b`) },
      });
      const dfc = geluBackward(gpu, c.fc, mp.dx);
      const fc = linearBackward(gpu, c.ln2.y, P(`${h}.mlp.fc.w`), dfc, {
        accumulate: { dw: this.g(`${h}.mlp.fc.w`), db: this.g(`${h}.mlp.fc.b`) },
      });
      const ln2 = layernormBackward(gpu, c.x1, P(`${h}.ln2.w`), c.ln2.mean, c.ln2.rstd, fc.dx);
      this.accumulate(`${h}.ln2.w`, ln2.dgamma);
      this.accumulate(`${h}.ln2.b`, ln2.dbeta);
      addInPlace(gpu, ln2.dx, dx); // dx1 = dx2 + (through the MLP branch)
      const dx1 = ln2.dx;
      gpu.release(mp.dx, dfc, fc.dx, dx, c.g, c.fc, c.ln2.y, c.ln2.mean, c.ln2.rstd, c.x1);
      // Attention: x1 = x + proj(attn(qkv(ln1(x))))
      const pj = linearBackward(gpu, c.att, P(`${h}.attn.proj.w`), dx1, {
        accumulate: { dw: this.g(`${h}.attn.proj.w`), db: this.g(`${h}.attn.proj.b`) },
      });
      const dqkv = attentionBackward(gpu, c.qkv, c.att, pj.dx, c.lse, dims);
      const qkv = linearBackward(gpu, c.ln1.y, P(`${h}.attn.qkv.w`), dqkv, {
        accumulate: { dw: this.g(`${h}.attn.qkv.w`), db: this.g(`${h}.attn.qkv.b`) },
      });
      const ln1 = layernormBackward(gpu, c.x, P(`${h}.ln1.w`), c.ln1.mean, c.ln1.rstd, qkv.dx);
      this.accumulate(`${h}.ln1.w`, ln1.dgamma);
      this.accumulate(`${h}.ln1.b`, ln1.dbeta);
      addInPlace(gpu, ln1.dx, dx1);
      gpu.release(pj.dx, dqkv, qkv.dx, dx1, c.att, c.lse, c.qkv, c.ln1.y, c.ln1.mean, c.ln1.rstd);
      // The block input is the previous block's output (owned here) or the stage input (owned here too).
      gpu.release(c.x);
      dx = ln1.dx;
    }
    this.releaseWeights(weights);
    if (!spec.hasEmbedding) return dx;
    const e = embeddingBackward(gpu, dx, mb.ids!, cfg.vocab, { batch: mb.batch, seq: mb.seq });
    this.accumulate('wte', e.dwte);
    if (mb.seq === cfg.context) this.accumulate('wpe', e.dwpe);
    else {
      const padded = gpu.zeros([cfg.context, cfg.dModel]);
      gpu.copy(e.dwpe, padded);
      this.accumulate('wpe', padded);
      gpu.release(e.dwpe);
    }
    gpu.release(dx);
    return undefined;
  }

  /** grad[name] += t, then releases t. */
  private accumulate(name: string, t: Tensor): void {
    addInPlace(this.gpu, this.g(name), t);
    this.gpu.release(t);
  }

  zeroGrads(): void {
    for (const s of this.slots.values()) this.gpu.clear(s.grad);
  }

  /** This stage's gradient tensors, in parameter order. */
  grads(): Tensor[] {
    return [...this.slots.values()].map((s) => s.grad);
  }

  /**
   * Applies one AdamW step with the accumulated gradients (times `gradScale`, e.g. from global clipping),
   * then zeroes them. Refuses the step if the gradient norm is not finite: weights and moments stay as they
   * were, the gradients are dropped, and NonFiniteGradientError says why.
   */
  async applyStep(adam: AdamWConfig, gradScale?: Tensor): Promise<void> {
    const norm = gradNorm(this.gpu, this.grads());
    const value = (await this.gpu.read(norm))[0];
    this.gpu.release(norm);
    if (!Number.isFinite(value)) {
      this.zeroGrads();
      throw new NonFiniteGradientError(value);
    }
    this.step++;
    for (const s of this.slots.values()) {
      adamwStep(
        this.gpu,
        { param: s.param, grad: s.grad, m: s.m, v: s.v, decay: s.spec.decay },
        adam,
        this.step,
        gradScale,
      );
    }
    this.zeroGrads();
  }

  /**
   * A copy of the live weights for forwards that will meet an update before their backward (asynchronous
   * training), or with `lookAhead` d > 0 the Nesterov-style extrapolation w + d·(w − w_prev) along the last
   * update (see rememberWeights): a gradient that lands d updates late is then computed near the weights it
   * is applied to. Each forward given the set holds it; the last backward releases it.
   */
  weightSet(lookAhead = 0): WeightSet {
    const { gpu } = this;
    const tensors = new Map<string, Tensor>();
    for (const [name, s] of this.slots) {
      const t = gpu.empty(s.param.shape, 'f32', `stash.${name}`);
      gpu.copy(s.param, t);
      const prev = this.previous?.get(name);
      if (lookAhead > 0 && prev) {
        addInPlace(gpu, t, s.param, lookAhead);
        addInPlace(gpu, t, prev, -lookAhead);
      }
      tensors.set(name, t);
    }
    return { tensors, users: 0 };
  }

  /** Keeps a copy of the live weights as w_prev for look-ahead (call before each update). */
  rememberWeights(): void {
    const { gpu } = this;
    this.previous ??= new Map(
      [...this.slots].map(([name, s]) => [name, gpu.empty(s.param.shape, 'f32', `prev.${name}`)]),
    );
    for (const [name, s] of this.slots) gpu.copy(s.param, this.previous.get(name)!);
  }

  /** A micro-batch that ran with `weights` is done with them: the last one frees the set. */
  private releaseWeights(weights?: WeightSet): void {
    if (!weights || --weights.users > 0) return;
    for (const t of weights.tensors.values()) this.gpu.release(t);
    weights.tensors.clear();
  }

  /** Drops the cached activations of an abandoned micro-batch (e.g. its peer vanished). */
  discard(id: number): void {
    const c = this.caches.get(id);
    if (!c) return;
    this.caches.delete(id);
    this.releaseWeights(c.weights);
    for (const b of c.blocks) {
      this.gpu.release(
        b.x,
        b.ln1.y,
        b.ln1.mean,
        b.ln1.rstd,
        b.qkv,
        b.att,
        b.lse,
        b.x1,
        b.ln2.y,
        b.ln2.mean,
        b.ln2.rstd,
        b.fc,
        b.g,
      );
    }
    if (c.head) this.gpu.release(c.head.x, c.head.lnf.y, c.head.lnf.mean, c.head.lnf.rstd, c.head.dlogits);
  }

  /**
   * Every parameter, read back. All the copies are queued in one synchronous pass (Gpu.read queues its copy
   * before it awaits), so the result is one consistent snapshot even while the stage trains: an update queued
   * later lands after all of them (one per slot awaited in turn let updates land between slots).
   */
  async readParams(): Promise<Map<string, Float32Array>> {
    const slots = [...this.slots];
    const values = await Promise.all(slots.map(([, s]) => this.gpu.read(s.param) as Promise<Float32Array>));
    return new Map(slots.map(([name], i) => [name, values[i]]));
  }

  async readGrads(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const [name, s] of this.slots) out.set(name, (await this.gpu.read(s.grad)) as Float32Array);
    return out;
  }

  destroy(): void {
    for (const id of [...this.caches.keys()]) this.discard(id);
    for (const s of this.slots.values()) this.gpu.release(s.param, s.grad, s.m, s.v);
    for (const t of this.previous?.values() ?? []) this.gpu.release(t);
    this.previous = undefined;
    this.slots.clear();
  }
}
