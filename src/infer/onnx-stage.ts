/**
 * One pipeline stage's forward as an ONNX graph, run by onnxruntime-web: an inference runtime independent of
 * our WGSL kernels (issue 7, point 5). The graph computes exactly what Stage.forward computes:
 *
 *   stage 0      x = wte[ids] + wpe[0..T)
 *   each block   x1 = x + proj(attn(LN1(x)))         LayerNorm: biased variance, eps 1e-5 (LAYERNORM_EPS)
 *                x2 = x1 + mlp.proj(gelu(fc(LN2(x1))))  GELU: tanh approximation, as x·sigmoid(2u) like gelu.wgsl
 *                attn: causal, q scaled by 1/√D before q·kᵀ (as attention.wgsl), softmax over keys j ≤ i
 *   last stage   logits = LNf(x)·head.w              (no loss: inference needs none)
 *
 * Weights are initializers (W stored [in, out], so MatMul(x, W) as our linearForward). Inputs are `ids`
 * int32 [batch, seq] at stage 0, else `x` float32 [batch, seq, dModel]; the output is `y` [batch, seq, dModel]
 * or, at the last stage, `logits` [batch, seq, vocab]. batch and seq are symbolic unless fixed at export.
 * Only standard ai.onnx ops of opset 17, all of which onnxruntime-web's WebGPU EP implements (Shape and
 * Reshape run on its CPU side by design).
 *
 * Runtime: `import 'onnxruntime-web'` resolves in a browser to the build with the WebGPU and wasm EPs (Vite
 * ships its wasm), and in Node to its Node build (wasm EP only), which loads ort-wasm-simd-threaded.wasm from
 * node_modules/onnxruntime-web/dist: it works offline.
 */
import * as ort from 'onnxruntime-web';
import { ArgumentError, ShapeError, TesseraGpuError, TokenRangeError } from '../gpu/index.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import { stageParamSpecs } from '../model/params.ts';
import type { Stage } from '../model/stage.ts';
import type { StageSpec } from '../model/stages.ts';
import { LAYERNORM_EPS } from '../ops/layernorm.ts';
import {
  encodeOnnxModel,
  ONNX_DTYPE,
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
} from './onnx-proto.ts';

export const ONNX_STAGE_OPSET = 17;
/** Added to masked (future) attention scores: exp underflows to exactly 0, and unlike −∞ it cannot make NaN. */
const MASKED = -1e30;
const GELU_K0 = Math.sqrt(2 / Math.PI);
const GELU_K1 = 0.044715;

export interface OnnxStageExportOptions {
  /** Fix the batch dimension (default: symbolic "batch"). */
  batch?: number;
  /** Fix the sequence length (default: symbolic "seq", any 1..context). */
  seq?: number;
}

/** Graph input/output names of a stage. */
export function onnxStageIO(spec: StageSpec): { input: 'ids' | 'x'; output: 'y' | 'logits' } {
  return { input: spec.hasEmbedding ? 'ids' : 'x', output: spec.hasHead ? 'logits' : 'y' };
}

/** Builds nodes and initializers with unique value names (shared with the KV-cached graph, onnx-infer.ts). */
export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private n = 0;

  init(name: string, dims: readonly number[], data: OnnxTensor['data']): string {
    this.initializers.push({ name, dims, data });
    return name;
  }
  i64(name: string, values: readonly number[]): string {
    return this.init(name, [values.length], BigInt64Array.from(values, BigInt));
  }
  scalar(name: string, value: number): string {
    return this.init(name, [], Float32Array.of(value));
  }
  op(op: string, inputs: readonly string[], attributes: OnnxAttribute[] = [], hint = op.toLowerCase()): string {
    return this.opN(op, inputs, 1, attributes, hint)[0];
  }
  opN(
    op: string,
    inputs: readonly string[],
    outputs: number,
    attributes: OnnxAttribute[] = [],
    hint = op.toLowerCase(),
  ): string[] {
    const id = this.n++;
    const outs = Array.from({ length: outputs }, (_, k) => `${hint}_${id}${outputs > 1 ? `_${k}` : ''}`);
    this.nodes.push({ op, inputs, outputs: outs, name: `${hint}_${id}`, attributes });
    return outs;
  }
}

export const int = (name: string, value: number): OnnxAttribute => ({ name, kind: 'int', value });
export const float = (name: string, value: number): OnnxAttribute => ({ name, kind: 'float', value });
export const ints = (name: string, value: number[]): OnnxAttribute => ({ name, kind: 'ints', value });

/**
 * Adds `spec`'s weights as initializers and returns the value name of each. Throws ShapeError when a weight is
 * missing or has the wrong size.
 */
export function addStageWeights(
  g: GraphBuilder,
  cfg: ModelConfig,
  spec: StageSpec,
  weights: ReadonlyMap<string, Float32Array>,
): (name: string) => string {
  const W = new Map<string, string>();
  for (const ps of stageParamSpecs(cfg, spec)) {
    const data = weights.get(ps.name);
    const n = ps.shape.reduce((a, b) => a * b, 1);
    if (!data) throw new ShapeError(`onnx export of stage ${spec.index}: weight ${ps.name} is missing`);
    if (data.length !== n)
      throw new ShapeError(
        `onnx export of stage ${spec.index}: weight ${ps.name} has ${data.length} values for shape [${ps.shape}]`,
      );
    W.set(ps.name, g.init(ps.name, ps.shape, data));
  }
  return (name) => W.get(name)!;
}

/** The parts of a block both graphs share, as Stage.forward computes them. */
export interface BlockOps {
  /** LayerNorm over the last axis (biased variance, eps LAYERNORM_EPS). */
  ln(v: string, w: string, b: string): string;
  /** v·W + b with W [in, out] (our linearForward). */
  linear(v: string, w: string, b: string): string;
  /** x1 + mlp.proj(gelu(mlp.fc(LN2(x1)))) of layer l. */
  mlp(x1: string, l: number): string;
}

export function blockOps(g: GraphBuilder, P: (name: string) => string): BlockOps {
  const k1 = g.scalar('gelu_k1', GELU_K1);
  const twoK0 = g.scalar('gelu_2k0', 2 * GELU_K0);
  const ln = (v: string, w: string, b: string) =>
    g.op('LayerNormalization', [v, P(w), P(b)], [int('axis', -1), float('epsilon', LAYERNORM_EPS)], 'ln');
  const linear = (v: string, w: string, b: string) => g.op('Add', [g.op('MatMul', [v, P(w)]), P(b)], [], 'linear');
  const mlp = (x1: string, l: number) => {
    const h = `h.${l}`;
    const fc = linear(ln(x1, `${h}.ln2.w`, `${h}.ln2.b`), `${h}.mlp.fc.w`, `${h}.mlp.fc.b`);
    // gelu(v) = v·sigmoid(2·K0·(v + K1·v³)), the form gelu.wgsl evaluates.
    const cube = g.op('Mul', [g.op('Mul', [fc, fc]), fc]);
    const u2 = g.op('Mul', [g.op('Add', [fc, g.op('Mul', [cube, k1])]), twoK0]);
    const gelu = g.op('Mul', [fc, g.op('Sigmoid', [u2])], [], 'gelu');
    return g.op('Add', [linear(gelu, `${h}.mlp.proj.w`, `${h}.mlp.proj.b`), x1], [], 'resid');
  };
  return { ln, linear, mlp };
}

/** The context-sized causal mask: 0 where key j ≤ query i, MASKED above the diagonal. */
export function causalMask(context: number): Float32Array {
  const mask = new Float32Array(context * context);
  for (let i = 0; i < context; i++) for (let j = i + 1; j < context; j++) mask[i * context + j] = MASKED;
  return mask;
}

/** logits = LNf(x)·head.w. */
export function headOp(g: GraphBuilder, P: (name: string) => string, x: string): string {
  const lnf = g.op(
    'LayerNormalization',
    [x, P('lnf.w'), P('lnf.b')],
    [int('axis', -1), float('epsilon', LAYERNORM_EPS)],
    'lnf',
  );
  return g.op('MatMul', [lnf, P('head.w')], [], 'head');
}

/**
 * The ONNX model (structured, not yet encoded) of `spec`'s forward with `weights` (names and shapes of
 * stageParamSpecs). Throws ShapeError when a weight is missing or has the wrong size.
 */
export function stageOnnxModel(
  cfg: ModelConfig,
  spec: StageSpec,
  weights: ReadonlyMap<string, Float32Array>,
  opts: OnnxStageExportOptions = {},
): OnnxModel {
  validateConfig(cfg);
  const { batch, seq } = opts;
  if (batch !== undefined && !(Number.isInteger(batch) && batch >= 1))
    throw new ArgumentError(`onnx export: batch must be a positive integer, got ${batch}`);
  if (seq !== undefined && !(Number.isInteger(seq) && seq >= 1 && seq <= cfg.context))
    throw new ArgumentError(`onnx export: seq must be an integer in 1..${cfg.context}, got ${seq}`);
  const C = cfg.dModel;
  const H = cfg.heads;
  const D = C / H;
  const g = new GraphBuilder();
  const P = addStageWeights(g, cfg, spec, weights);
  const io = onnxStageIO(spec);

  // T as a 1-element int64 tensor, read from the input so one graph serves every sequence length.
  const T = g.op('Shape', [io.input], [int('start', 1), int('end', 2)], 'seq_len');
  const zero = g.i64('zero', [0]);
  let x: string;
  if (spec.hasEmbedding) {
    const tok = g.op('Gather', [P('wte'), io.input], [int('axis', 0)], 'tok_emb');
    const pos = g.op('Slice', [P('wpe'), zero, T, zero], [], 'pos_emb');
    x = g.op('Add', [tok, pos], [], 'emb');
  } else x = io.input;

  if (spec.endLayer > spec.firstLayer) {
    // Causal mask [T, T]: 0 where key j ≤ query i, MASKED above the diagonal; the context-sized constant is
    // sliced to T (Trilu would build it at run time, but the WebGPU EP lacks it).
    const L = cfg.context;
    const mask = causalMask(L);
    const TT = g.op('Concat', [T, T], [int('axis', 0)], 'mask_ends');
    const causal = g.op(
      'Slice',
      [g.init('causal_mask', [L, L], mask), g.i64('zeros2', [0, 0]), TT, g.i64('axes01', [0, 1])],
      [],
      'mask',
    );
    const split = g.i64('qkv_split', [C, C, C]);
    const heads = g.i64('to_heads', [0, 0, H, D]);
    const merged = g.i64('from_heads', [0, 0, C]);
    const scale = g.scalar('attn_scale', 1 / Math.sqrt(D));
    const { ln, linear, mlp } = blockOps(g, P);
    for (let l = spec.firstLayer; l < spec.endLayer; l++) {
      const h = `h.${l}`;
      const qkv = linear(ln(x, `${h}.ln1.w`, `${h}.ln1.b`), `${h}.attn.qkv.w`, `${h}.attn.qkv.b`);
      const [q, k, v] = g.opN('Split', [qkv, split], 3, [int('axis', -1)]);
      const toHeads = (t: string, perm: number[]) =>
        g.op('Transpose', [g.op('Reshape', [t, heads])], [ints('perm', perm)]);
      const qh = toHeads(g.op('Mul', [q, scale], [], 'q_scaled'), [0, 2, 1, 3]); // [B, H, T, D]
      const kt = toHeads(k, [0, 2, 3, 1]); // [B, H, D, T]
      const vh = toHeads(v, [0, 2, 1, 3]); // [B, H, T, D]
      const scores = g.op('Add', [g.op('MatMul', [qh, kt], [], 'scores'), causal], [], 'masked');
      const probs = g.op('Softmax', [scores], [int('axis', -1)]);
      const o = g.op('Transpose', [g.op('MatMul', [probs, vh], [], 'attn')], [ints('perm', [0, 2, 1, 3])]);
      const att = g.op('Reshape', [o, merged]);
      const x1 = g.op('Add', [linear(att, `${h}.attn.proj.w`, `${h}.attn.proj.b`), x], [], 'resid');
      x = mlp(x1, l);
    }
  }

  if (spec.hasHead) x = headOp(g, P, x);
  // Name the result; a stage without blocks, embedding or head is the identity.
  g.nodes.push({ op: 'Identity', inputs: [x], outputs: [io.output], name: 'output' });

  const B = batch ?? 'batch';
  const S = seq ?? 'seq';
  return {
    opset: ONNX_STAGE_OPSET,
    producer: 'tessera',
    docString:
      `stage ${spec.index}/${spec.count}: layers [${spec.firstLayer}, ` +
      `${spec.endLayer})${spec.hasEmbedding ? ', embedding' : ''}${spec.hasHead ? ', head' : ''}`,
    graph: {
      name: `tessera_stage_${spec.index}`,
      nodes: g.nodes,
      initializers: g.initializers,
      inputs: [
        spec.hasEmbedding
          ? { name: 'ids', dtype: ONNX_DTYPE.INT32, dims: [B, S] }
          : { name: 'x', dtype: ONNX_DTYPE.FLOAT, dims: [B, S, C] },
      ],
      outputs: [{ name: io.output, dtype: ONNX_DTYPE.FLOAT, dims: [B, S, spec.hasHead ? cfg.vocab : C] }],
    },
  };
}

/** Serialized ONNX model of a stage with the given weights. */
export function exportStageOnnx(
  cfg: ModelConfig,
  spec: StageSpec,
  weights: ReadonlyMap<string, Float32Array>,
  opts?: OnnxStageExportOptions,
): Uint8Array {
  return encodeOnnxModel(stageOnnxModel(cfg, spec, weights, opts));
}

/** Serialized ONNX model of a live stage's current weights (read back from the GPU). */
export async function exportStage(stage: Stage, opts?: OnnxStageExportOptions): Promise<Uint8Array> {
  return exportStageOnnx(stage.cfg, stage.spec, await stage.readParams(), opts);
}

// ---- runtime ------------------------------------------------------------------------------------------

/** onnxruntime-web failed to create a session or run the graph (the message carries ORT's own). */
export class OnnxRuntimeError extends TesseraGpuError {
  constructor(message: string) {
    super('onnx-runtime', message);
  }
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

/** WebGPU first where there is a browser GPU; Node's onnxruntime-web build has the wasm EP only. */
export function defaultExecutionProviders(): string[] {
  return isNode ? ['wasm'] : ['webgpu', 'wasm'];
}

export interface OnnxStageRunnerOptions extends OnnxStageExportOptions {
  /** Tried in order; the first that creates a session is used (see `executionProvider`). */
  executionProviders?: string[];
  /**
   * Threads of the wasm EP (ort.env.wasm.numThreads). Process-wide and read when ORT first initialises,
   * so only the first session's choice counts.
   */
  numThreads?: number;
}

/** One forward's input as Stage.forward takes it, on the host: ids at stage 0, else activations [batch·seq, dModel]. */
export interface OnnxStageInput {
  batch: number;
  seq: number;
  ids?: Int32Array;
  input?: Float32Array;
}

export function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * An ORT session of `bytes` on the first of opts.executionProviders (default defaultExecutionProviders()) that
 * can load it; OnnxRuntimeError (`where`: …) listing every provider's failure when none can.
 */
export async function openOnnxSession(
  bytes: Uint8Array,
  opts: Pick<OnnxStageRunnerOptions, 'executionProviders' | 'numThreads'>,
  where: string,
  /** Extra session options for a provider (e.g. where WebGPU keeps outputs). */
  sessionOptions: (ep: string) => Omit<ort.InferenceSession.SessionOptions, 'executionProviders'> = () => ({}),
): Promise<{ session: ort.InferenceSession; ep: string }> {
  if (opts.numThreads !== undefined) ort.env.wasm.numThreads = opts.numThreads;
  const eps = opts.executionProviders ?? defaultExecutionProviders();
  if (!eps.length) throw new ArgumentError(`${where}: no execution providers given`);
  const failures: string[] = [];
  for (const ep of eps) {
    try {
      const session = await ort.InferenceSession.create(bytes, {
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
        ...sessionOptions(ep),
        executionProviders: [ep],
      });
      return { session, ep };
    } catch (e) {
      failures.push(`${ep}: ${message(e)}`);
    }
  }
  throw new OnnxRuntimeError(`${where}: no execution provider could load the model (${failures.join('; ')})`);
}

/**
 * A stage's forward on onnxruntime-web. The session holds a snapshot of the weights it was created with
 * (`step` says which optimizer step): after an update, create a new runner.
 */
export class OnnxStageRunner {
  readonly cfg: ModelConfig;
  readonly spec: StageSpec;
  /** The execution provider the session was created with ('webgpu' or 'wasm'). */
  readonly executionProvider: string;
  /** Stage.step of the weights, when made from a Stage. */
  readonly step?: number;
  /** Size of the serialized model in bytes. */
  readonly modelBytes: number;
  private readonly session: ort.InferenceSession;
  private readonly fixed: OnnxStageExportOptions;

  private constructor(
    cfg: ModelConfig,
    spec: StageSpec,
    session: ort.InferenceSession,
    ep: string,
    fixed: OnnxStageExportOptions,
    modelBytes: number,
    step?: number,
  ) {
    this.cfg = cfg;
    this.spec = spec;
    this.session = session;
    this.executionProvider = ep;
    this.fixed = fixed;
    this.modelBytes = modelBytes;
    this.step = step;
  }

  /** Exports `weights` for `spec` and opens a session on the first execution provider that works. */
  static async create(
    cfg: ModelConfig,
    spec: StageSpec,
    weights: ReadonlyMap<string, Float32Array>,
    opts: OnnxStageRunnerOptions = {},
    step?: number,
  ): Promise<OnnxStageRunner> {
    const fixed = { batch: opts.batch, seq: opts.seq };
    const bytes = exportStageOnnx(cfg, spec, weights, fixed);
    const { session, ep } = await openOnnxSession(bytes, opts, `onnx stage ${spec.index}`);
    return new OnnxStageRunner(cfg, spec, session, ep, fixed, bytes.length, step);
  }

  /** A runner for a live stage's current weights. */
  static async fromStage(stage: Stage, opts?: OnnxStageRunnerOptions): Promise<OnnxStageRunner> {
    return OnnxStageRunner.create(stage.cfg, stage.spec, await stage.readParams(), opts, stage.step);
  }

  /**
   * The stage's forward: activations [batch·seq, dModel] for the next stage, or logits [batch·seq, vocab] at
   * the last stage, row-major like Stage.forward's tensors. Bad input throws ShapeError / TokenRangeError
   * before anything runs.
   */
  async forward(mb: OnnxStageInput): Promise<Float32Array> {
    const { cfg, spec } = this;
    const { batch, seq } = mb;
    const where = `onnx stage ${spec.index}`;
    if (!Number.isInteger(batch) || batch < 1)
      throw new ShapeError(`${where}: batch must be a positive integer, got ${batch}`);
    if (!Number.isInteger(seq) || seq < 1 || seq > cfg.context)
      throw new ShapeError(`${where}: seq must be an integer in 1..${cfg.context} (the context), got ${seq}`);
    if (this.fixed.batch !== undefined && batch !== this.fixed.batch)
      throw new ShapeError(`${where}: exported for batch ${this.fixed.batch}, got ${batch}`);
    if (this.fixed.seq !== undefined && seq !== this.fixed.seq)
      throw new ShapeError(`${where}: exported for seq ${this.fixed.seq}, got ${seq}`);
    const rows = batch * seq;
    let feed: ort.Tensor;
    if (spec.hasEmbedding) {
      if (mb.input) throw new ShapeError(`${where} embeds token ids: pass ids, not activations`);
      if (!(mb.ids instanceof Int32Array))
        throw new ShapeError(
          `${where} needs token ids as an Int32Array of ${rows}, got ${mb.ids === undefined ? 'none' : typeof mb.ids}`,
        );
      if (mb.ids.length !== rows)
        throw new ShapeError(`${where} needs ${rows} token ids (batch ${batch} × seq ${seq}), got ${mb.ids.length}`);
      const bad = mb.ids.findIndex((t) => t < 0 || t >= cfg.vocab);
      if (bad >= 0)
        throw new TokenRangeError(`${where}: token id ${mb.ids[bad]} at position ${bad} is outside [0, ${cfg.vocab})`);
      feed = new ort.Tensor('int32', mb.ids, [batch, seq]);
    } else {
      if (mb.ids) throw new ShapeError(`${where} takes activations from the previous stage, not token ids`);
      if (!(mb.input instanceof Float32Array))
        throw new ShapeError(
          `${where} needs input activations as a Float32Array of ${rows}×${cfg.dModel}, got ` +
            `${mb.input === undefined ? 'none' : typeof mb.input}`,
        );
      if (mb.input.length !== rows * cfg.dModel)
        throw new ShapeError(
          `${where}: input must be [${rows}, ${cfg.dModel}] (${rows * cfg.dModel} values), got ${mb.input.length}`,
        );
      feed = new ort.Tensor('float32', mb.input, [batch, seq, cfg.dModel]);
    }
    const io = onnxStageIO(spec);
    let out: ort.Tensor;
    try {
      out = (await this.session.run({ [io.input]: feed }))[io.output];
    } catch (e) {
      throw new OnnxRuntimeError(`${where}: onnxruntime-web (${this.executionProvider}) failed: ${message(e)}`);
    }
    const data = await out.getData(true);
    if (!(data instanceof Float32Array))
      throw new OnnxRuntimeError(`${where}: expected float32 output, got ${out.type}`);
    return data;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
