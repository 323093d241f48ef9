import { ArgumentError, ShapeError, TokenRangeError, type Tensor } from '../gpu/index.ts';
import type { Stage } from '../model/stage.ts';
import { attentionDecode, kvAppend } from '../ops/attention-decode.ts';
import { embedding } from '../ops/embedding.ts';
import { gelu } from '../ops/gelu.ts';
import { layernorm } from '../ops/layernorm.ts';
import { linearForward, matmul } from '../ops/matmul.ts';
import { addInPlace } from '../ops/residual.ts';
import { KvCache, type KvCacheOptions, type KvCacheStats } from './kv-cache.ts';

/**
 * What a stage consumes: token ids on stage 0 (host array), activations [t, dModel] on later stages (a GPU
 * tensor, whose ownership passes to the call, or a host Float32Array as it arrives off the wire).
 */
export type StageInput = Int32Array | readonly number[] | Tensor | Float32Array;

export interface StageInferenceOptions extends Omit<KvCacheOptions, 'maxTokensPerSession'> {
  /** Positions a session may hold; default and maximum: the model's context (wpe has no more rows). */
  maxTokensPerSession?: number;
}

export interface StageStepResult {
  /** Activations [t, dModel] for the next stage (not on the last stage). The caller owns them. */
  output?: Tensor;
  /**
   * Last stage: logits [t, vocab] (prefill), or [1, vocab] for the last new position (decode). The caller owns them.
   */
  logits?: Tensor;
  /** Positions of the new rows: [start, start + t). */
  start: number;
  /** Positions the session holds now. */
  length: number;
}

export interface SessionInfo {
  length: number;
  capacity: number;
  /** The stage's optimizer step when the session was opened: its cache was computed with those weights. */
  weightsStep: number;
  lastUsed: number;
}

/**
 * Inference for one pipeline stage with per-session KV caches. It runs the stage's layers with the stage's
 * live parameters (read from stage.slots at each call, never copied off the stage), so training updates
 * apply to the next request; a session's cached keys and values keep the weights they were computed with
 * (SessionInfo.weightsStep says which).
 *
 * prefill(session, input) opens the session, or continues it (a long prompt in chunks); decode(session,
 * input) continues an open session and returns only the last position's logits. Each runs t ≥ 1 new
 * positions: the same kernels as Stage.forward except attention, which attends over the cache.
 */
export class StageInference {
  readonly stage: Stage;
  readonly cache: KvCache;

  constructor(stage: Stage, opts: StageInferenceOptions) {
    const { context } = stage.cfg;
    const max = opts.maxTokensPerSession ?? context;
    if (max > context)
      throw new ArgumentError(`StageInference: maxTokensPerSession ${max} exceeds the model's context ${context}`);
    this.stage = stage;
    this.cache = new KvCache(
      stage.gpu,
      { layers: stage.spec.endLayer - stage.spec.firstLayer, channels: stage.cfg.dModel },
      { ...opts, maxTokensPerSession: max },
    );
  }

  /**
   * Runs the prompt (or its next chunk) of `session`, opening it if new. Last stage: logits of every new position, or
   * only the last with `{ logits: 'last' }`.
   */
  prefill(session: string, input: StageInput, opts: { logits?: 'all' | 'last' } = {}): StageStepResult {
    return this.run(session, input, true, opts.logits === 'last');
  }

  /**
   * Runs the next position(s) of an open session (usually one token). Last stage: logits [1, vocab] of the last one.
   */
  decode(session: string, input: StageInput): StageStepResult {
    return this.run(session, input, false, true);
  }

  /** Drops a session's cache; false if it had none. */
  end(session: string): boolean {
    return this.cache.end(session);
  }

  session(session: string): SessionInfo | undefined {
    const s = this.cache.peek(session);
    return s && { length: s.length, capacity: s.capacity, weightsStep: s.tag!, lastUsed: s.lastUsed };
  }

  stats(): KvCacheStats {
    return this.cache.stats();
  }

  destroy(): void {
    this.cache.destroy();
  }

  private param(name: string): Tensor {
    const slot = this.stage.slots.get(name);
    if (!slot) throw new ShapeError(`stage ${this.stage.spec.index} has no parameter ${name} (destroyed?)`);
    return slot.param;
  }

  private run(id: string, input: StageInput, create: boolean, lastOnly: boolean): StageStepResult {
    const { gpu, cfg, spec } = this.stage;
    const owned = isTensor(input) ? input : undefined;
    let t: number;
    let s: ReturnType<KvCache['reserve']>;
    try {
      t = this.validate(input);
      s = this.cache.reserve(id, t, create);
    } catch (e) {
      gpu.release(owned); // a refused input is consumed all the same, as an accepted one is
      throw e;
    }
    s.tag ??= this.stage.step;
    const past = s.length;
    let x: Tensor;
    if (spec.hasEmbedding) {
      // The embedding kernel adds wpe rows 0..t−1; these rows sit at positions past.., so it gets a
      // scratch view of wpe rows past..past+t−1 (copied on the device, released at once).
      const ids = gpu.upload(Int32Array.from(input as ArrayLike<number>), [t], 'i32', 'infer.ids');
      const wpe = gpu.empty([t, cfg.dModel], 'f32', 'infer.wpe');
      gpu.copy(this.param('wpe'), wpe, { srcOffset: past * cfg.dModel, count: t * cfg.dModel });
      x = embedding(gpu, ids, this.param('wte'), wpe, { batch: 1, seq: t });
      gpu.release(ids, wpe);
    } else {
      x = owned ?? gpu.upload(input as Float32Array, [t, cfg.dModel], 'f32', 'infer.input');
    }
    for (let l = spec.firstLayer; l < spec.endLayer; l++) x = this.block(l, x, s.layers[l - spec.firstLayer], past);
    this.cache.commit(s, t);
    const result = { start: past, length: s.length };
    if (!spec.hasHead) return { ...result, output: x };
    if (lastOnly && t > 1) {
      const last = gpu.empty([1, cfg.dModel], 'f32', 'infer.last');
      gpu.copy(x, last, { srcOffset: (t - 1) * cfg.dModel });
      gpu.release(x);
      x = last;
    }
    const lnf = layernorm(gpu, x, this.param('lnf.w'), this.param('lnf.b'));
    const logits = matmul(gpu, lnf.y, this.param('head.w'));
    gpu.release(x, lnf.y, lnf.mean, lnf.rstd);
    return { ...result, logits };
  }

  /** One block over t new rows at positions past..: x → x + attn(ln1 x) → + mlp(ln2 ·). Releases x. */
  private block(l: number, x: Tensor, kv: Tensor, past: number): Tensor {
    const { gpu, cfg } = this.stage;
    const P = (n: string) => this.param(`h.${l}.${n}`);
    const dims = { heads: cfg.heads, past };
    const ln1 = layernorm(gpu, x, P('ln1.w'), P('ln1.b'));
    const qkv = linearForward(gpu, ln1.y, P('attn.qkv.w'), P('attn.qkv.b'));
    kvAppend(gpu, qkv, kv, dims);
    const att = attentionDecode(gpu, qkv, kv, dims);
    const x1 = linearForward(gpu, att.out, P('attn.proj.w'), P('attn.proj.b'));
    addInPlace(gpu, x1, x);
    gpu.release(x, ln1.y, ln1.mean, ln1.rstd, qkv, att.out, att.lse);
    const ln2 = layernorm(gpu, x1, P('ln2.w'), P('ln2.b'));
    const fc = linearForward(gpu, ln2.y, P('mlp.fc.w'), P('mlp.fc.b'));
    const g = gelu(gpu, fc);
    const x2 = linearForward(gpu, g, P('mlp.proj.w'), P('mlp.proj.b'));
    addInPlace(gpu, x2, x1);
    gpu.release(x1, ln2.y, ln2.mean, ln2.rstd, fc, g);
    return x2;
  }

  /** New positions in `input`, after checking it fits this stage (before any GPU work or cache change). */
  private validate(input: StageInput): number {
    const { cfg, spec } = this.stage;
    if (spec.hasEmbedding) {
      if (isTensor(input) || input instanceof Float32Array)
        throw new ShapeError('stage 0 takes token ids (Int32Array or number[]), not activations');
      if (input.length < 1) throw new ShapeError('stage 0: no token ids');
      for (let i = 0; i < input.length; i++) {
        const id = input[i];
        if (!Number.isInteger(id) || id < 0 || id >= cfg.vocab)
          throw new TokenRangeError(`token id ${id} at position ${i} is outside [0, ${cfg.vocab})`);
      }
      return input.length;
    }
    if (isTensor(input)) {
      if (input.dtype !== 'f32' || input.shape.length !== 2 || input.shape[1] !== cfg.dModel) {
        throw new ShapeError(
          `stage ${spec.index}: input must be f32 [t, ${cfg.dModel}], got ${input.dtype} [${input.shape}]`,
        );
      }
      return input.shape[0];
    }
    if (!(input instanceof Float32Array))
      throw new ShapeError(
        `stage ${spec.index} takes activations [t, ${cfg.dModel}] (Tensor or Float32Array), not token ids`,
      );
    if (input.length < 1 || input.length % cfg.dModel !== 0)
      throw new ShapeError(`stage ${spec.index}: ${input.length} activations are not t rows of ${cfg.dModel}`);
    return input.length / cfg.dModel;
  }
}

function isTensor(x: StageInput): x is Tensor {
  return typeof x === 'object' && x !== null && 'buffer' in x && 'shape' in x && 'dtype' in x && !ArrayBuffer.isView(x);
}
