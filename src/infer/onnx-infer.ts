/**
 * A stage's KV-cached forward as an ONNX graph (issue 7, point 5): the graph of onnx-stage.ts, but over the t
 * NEW positions of a session only, attending over the keys and values of the positions before them.
 *
 *   inputs   ids int32 [1, t] (stage 0) | x float32 [1, t, dModel]
 *            pos int64 [t]: the positions of the new rows, P..P+t−1 (wpe rows at stage 0; causal-mask rows)
 *            past_k_l, past_v_l float32 [1, heads, P, headDim] for each layer l of the stage (P may be 0)
 *            logits_from int64 [1] (last stage): −r, to compute the logits of the last r new rows only (sampling
 *            needs the last one; scoring all t): the head's cost then grows with r, not t
 *   outputs  y [1, t, dModel] | logits [1, r, vocab]
 *            present_k_l, present_v_l [1, heads, P+t, headDim]: past and new, the next step's past
 *
 * Attention of layer l: keys and values are Concat(past, new) along positions; the mask of new row i is row
 * pos[i] of the context-sized causal mask, cut to P+t columns, so key j counts iff j ≤ pos[i] — exactly the
 * attention of Stage.forward over the whole sequence, and of StageInference over its cache.
 * Opset 17 standard ops only (Gather, Slice, Concat, Shape, Transpose, MatMul, Softmax, LayerNormalization…),
 * all implemented by onnxruntime-web's WebGPU EP and its wasm EP.
 */
import * as ort from 'onnxruntime-web';
import { ArgumentError } from '../gpu/index.ts';
import { validateConfig, type ModelConfig } from '../model/config.ts';
import type { StageSpec } from '../model/stages.ts';
import { encodeOnnxModel, ONNX_DTYPE, type OnnxModel, type OnnxValueInfo } from './onnx-proto.ts';
import {
  addStageWeights,
  blockOps,
  causalMask,
  GraphBuilder,
  headOp,
  int,
  ints,
  message,
  ONNX_STAGE_OPSET,
  onnxStageIO,
  OnnxRuntimeError,
  openOnnxSession,
  type OnnxStageRunnerOptions,
} from './onnx-stage.ts';

/** Graph input/output names of a stage's cached graph. */
export interface OnnxCachedIO {
  input: 'ids' | 'x';
  output: 'y' | 'logits';
  /** Per layer of the stage, first layer first. */
  pastK: string[];
  pastV: string[];
  presentK: string[];
  presentV: string[];
}

export function onnxCachedIO(spec: StageSpec): OnnxCachedIO {
  const layers = Array.from({ length: spec.endLayer - spec.firstLayer }, (_, i) => spec.firstLayer + i);
  return {
    ...onnxStageIO(spec),
    pastK: layers.map((l) => `past_k_${l}`),
    pastV: layers.map((l) => `past_v_${l}`),
    presentK: layers.map((l) => `present_k_${l}`),
    presentV: layers.map((l) => `present_v_${l}`),
  };
}

/** The ONNX model (structured) of `spec`'s KV-cached forward with `weights` (names and shapes of stageParamSpecs). */
export function stageCachedOnnxModel(
  cfg: ModelConfig,
  spec: StageSpec,
  weights: ReadonlyMap<string, Float32Array>,
): OnnxModel {
  validateConfig(cfg);
  if (spec.endLayer < spec.firstLayer)
    throw new ArgumentError(`onnx export: stage ${spec.index} has layers [${spec.firstLayer}, ${spec.endLayer})`);
  const C = cfg.dModel;
  const H = cfg.heads;
  const D = C / H;
  const g = new GraphBuilder();
  const P = addStageWeights(g, cfg, spec, weights);
  const io = onnxCachedIO(spec);

  let x: string;
  if (spec.hasEmbedding) {
    const tok = g.op('Gather', [P('wte'), io.input], [int('axis', 0)], 'tok_emb'); // [1, t, C]
    const pos = g.op('Gather', [P('wpe'), 'pos'], [int('axis', 0)], 'pos_emb'); // [t, C], broadcast over the batch of 1
    x = g.op('Add', [tok, pos], [], 'emb');
  } else x = io.input;

  const outputs: { from: string; to: string }[] = [];
  if (spec.endLayer > spec.firstLayer) {
    const split = g.i64('qkv_split', [C, C, C]);
    const heads = g.i64('to_heads', [0, 0, H, D]);
    const merged = g.i64('from_heads', [0, 0, C]);
    const scale = g.scalar('attn_scale', 1 / Math.sqrt(D));
    const { ln, linear, mlp } = blockOps(g, P);
    // Rows pos[i] of the causal mask [t, context], cut below to the P+t keys (known once the first layer's
    // keys are concatenated): key j is masked iff j > pos[i].
    const maskRows = g.op(
      'Gather',
      [g.init('causal_mask', [cfg.context, cfg.context], causalMask(cfg.context)), 'pos'],
      [int('axis', 0)],
      'mask_rows',
    );
    let mask: string | undefined;
    for (let l = spec.firstLayer; l < spec.endLayer; l++) {
      const i = l - spec.firstLayer;
      const h = `h.${l}`;
      const qkv = linear(ln(x, `${h}.ln1.w`, `${h}.ln1.b`), `${h}.attn.qkv.w`, `${h}.attn.qkv.b`);
      const [q, k, v] = g.opN('Split', [qkv, split], 3, [int('axis', -1)]);
      // [1, H, t, D]
      const toHeads = (t: string) => g.op('Transpose', [g.op('Reshape', [t, heads])], [ints('perm', [0, 2, 1, 3])]);
      const qh = toHeads(g.op('Mul', [q, scale], [], 'q_scaled'));
      const kAll = g.op('Concat', [io.pastK[i], toHeads(k)], [int('axis', 2)], 'keys'); // [1, H, P+t, D]
      const vAll = g.op('Concat', [io.pastV[i], toHeads(v)], [int('axis', 2)], 'values');
      outputs.push({ from: kAll, to: io.presentK[i] }, { from: vAll, to: io.presentV[i] });
      if (!mask) {
        const total = g.op('Shape', [kAll], [int('start', 2), int('end', 3)], 'total_len');
        mask = g.op('Slice', [maskRows, g.i64('zero', [0]), total, g.i64('axis1', [1])], [], 'mask'); // [t, P+t]
      }
      const kt = g.op('Transpose', [kAll], [ints('perm', [0, 1, 3, 2])]); // [1, H, D, P+t]
      const scores = g.op('Add', [g.op('MatMul', [qh, kt], [], 'scores'), mask], [], 'masked');
      const probs = g.op('Softmax', [scores], [int('axis', -1)]);
      const o = g.op('Transpose', [g.op('MatMul', [probs, vAll], [], 'attn')], [ints('perm', [0, 2, 1, 3])]);
      const att = g.op('Reshape', [o, merged]);
      const x1 = g.op('Add', [linear(att, `${h}.attn.proj.w`, `${h}.attn.proj.b`), x], [], 'resid');
      x = mlp(x1, l);
    }
  }

  if (spec.hasHead) {
    x = g.op(
      'Slice',
      [x, 'logits_from', g.i64('end', [Number.MAX_SAFE_INTEGER]), g.i64('axis1b', [1])],
      [],
      'logit_rows',
    );
    x = headOp(g, P, x);
  }
  g.nodes.push({ op: 'Identity', inputs: [x], outputs: [io.output], name: 'output' });
  for (const o of outputs) g.nodes.push({ op: 'Identity', inputs: [o.from], outputs: [o.to], name: o.to });

  const kv = (name: string, len: string): OnnxValueInfo => ({ name, dtype: ONNX_DTYPE.FLOAT, dims: [1, H, len, D] });
  const inputs: OnnxValueInfo[] = [
    spec.hasEmbedding
      ? { name: 'ids', dtype: ONNX_DTYPE.INT32, dims: [1, 't'] }
      : { name: 'x', dtype: ONNX_DTYPE.FLOAT, dims: [1, 't', C] },
  ];
  // pos feeds the embedding (stage 0) and the mask (blocks); a stage with neither (head only) does not take it.
  if (spec.hasEmbedding || spec.endLayer > spec.firstLayer)
    inputs.push({ name: 'pos', dtype: ONNX_DTYPE.INT64, dims: ['t'] });
  if (spec.hasHead) inputs.push({ name: 'logits_from', dtype: ONNX_DTYPE.INT64, dims: [1] });
  io.pastK.forEach((k, i) => inputs.push(kv(k, 'past'), kv(io.pastV[i], 'past')));
  const outs: OnnxValueInfo[] = [
    { name: io.output, dtype: ONNX_DTYPE.FLOAT, dims: [1, spec.hasHead ? 'rows' : 't', spec.hasHead ? cfg.vocab : C] },
  ];
  io.presentK.forEach((k, i) => outs.push(kv(k, 'total'), kv(io.presentV[i], 'total')));
  return {
    opset: ONNX_STAGE_OPSET,
    producer: 'tessera',
    docString:
      `stage ${spec.index}/${spec.count}, KV-cached: layers [${spec.firstLayer}, ` +
      `${spec.endLayer})${spec.hasEmbedding ? ', embedding' : ''}${spec.hasHead ? ', head' : ''}`,
    graph: {
      name: `tessera_stage_${spec.index}_cached`,
      nodes: g.nodes,
      initializers: g.initializers,
      inputs,
      outputs: outs,
    },
  };
}

/** Serialized KV-cached ONNX model of a stage with the given weights. */
export function exportStageCachedOnnx(
  cfg: ModelConfig,
  spec: StageSpec,
  weights: ReadonlyMap<string, Float32Array>,
): Uint8Array {
  return encodeOnnxModel(stageCachedOnnxModel(cfg, spec, weights));
}

export interface OnnxCachedRunnerOptions extends Pick<OnnxStageRunnerOptions, 'executionProviders' | 'numThreads'> {
  /**
   * On the WebGPU EP, keep present K/V in GPU buffers (ORT's preferredOutputLocation 'gpu-buffer') and feed
   * them back as the next step's past without a round trip through JS (default true). The wasm EP keeps them
   * in JS memory either way.
   */
  kvOnDevice?: boolean;
}

export interface OnnxCachedStep {
  /** y [t, dModel], or at the last stage the logits [rows, vocab] of the last `logitRows` new rows. */
  output: Float32Array;
  /** present_k_l, present_v_l per layer (k then v), the session's past for its next step. The caller owns them. */
  present: ort.Tensor[];
}

/**
 * One ORT session of a stage's KV-cached graph, with the weights it was exported with (`step`). It keeps no
 * per-session state: the caller passes each session's past K/V in and keeps the present K/V it gets back.
 * Inputs are checked by the caller (stage-runtime.ts); this checks only what the graph needs to be fed.
 */
export class OnnxCachedRunner {
  readonly cfg: ModelConfig;
  readonly spec: StageSpec;
  readonly executionProvider: string;
  /** Stage.step of the weights. */
  readonly step: number;
  readonly modelBytes: number;
  readonly io: OnnxCachedIO;
  private readonly session: ort.InferenceSession;

  private constructor(
    cfg: ModelConfig,
    spec: StageSpec,
    session: ort.InferenceSession,
    ep: string,
    step: number,
    modelBytes: number,
  ) {
    this.cfg = cfg;
    this.spec = spec;
    this.session = session;
    this.executionProvider = ep;
    this.step = step;
    this.modelBytes = modelBytes;
    this.io = onnxCachedIO(spec);
  }

  static async create(
    cfg: ModelConfig,
    spec: StageSpec,
    weights: ReadonlyMap<string, Float32Array>,
    step: number,
    opts: OnnxCachedRunnerOptions = {},
  ): Promise<OnnxCachedRunner> {
    const bytes = exportStageCachedOnnx(cfg, spec, weights);
    const io = onnxCachedIO(spec);
    const onDevice = Object.fromEntries([...io.presentK, ...io.presentV].map((n) => [n, 'gpu-buffer' as const]));
    const { session, ep } = await openOnnxSession(bytes, opts, `onnx cached stage ${spec.index}`, (ep) =>
      ep === 'webgpu' && (opts.kvOnDevice ?? true) && io.presentK.length ? { preferredOutputLocation: onDevice } : {},
    );
    return new OnnxCachedRunner(cfg, spec, session, ep, step, bytes.length);
  }

  /** The past of a new session: [1, heads, 0, headDim] per layer, k then v. */
  emptyPast(): ort.Tensor[] {
    const { heads, dModel } = this.cfg;
    return this.io.pastK.flatMap(() =>
      [0, 1].map(() => new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, dModel / heads])),
    );
  }

  /**
   * Runs t new positions start..start+t−1 after `past` (k, v per layer, each [1, heads, start, headDim]); at the
   * last stage, the logits of the last `logitRows` (1..t) of them.
   */
  async run(
    input: Int32Array | Float32Array,
    start: number,
    past: readonly ort.Tensor[],
    logitRows = 1,
  ): Promise<OnnxCachedStep> {
    const { cfg, spec, io } = this;
    const t = spec.hasEmbedding ? input.length : input.length / cfg.dModel;
    if (past.length !== 2 * io.pastK.length)
      throw new ArgumentError(
        `onnx cached stage ${spec.index}: ${past.length} past tensors for ${io.pastK.length} layers`,
      );
    const feeds: Record<string, ort.Tensor> = {
      [io.input]: spec.hasEmbedding
        ? new ort.Tensor('int32', input as Int32Array, [1, t])
        : new ort.Tensor('float32', input as Float32Array, [1, t, cfg.dModel]),
    };
    if (spec.hasHead) {
      if (!(Number.isInteger(logitRows) && logitRows >= 1 && logitRows <= t))
        throw new ArgumentError(`onnx cached stage ${spec.index}: logits of ${logitRows} rows of ${t}`);
      feeds.logits_from = new ort.Tensor('int64', BigInt64Array.of(BigInt(-logitRows)), [1]);
    }
    if (this.session.inputNames.includes('pos'))
      feeds.pos = new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: t }, (_, i) => BigInt(start + i)),
        [t],
      );
    io.pastK.forEach((k, i) => {
      feeds[k] = past[2 * i];
      feeds[io.pastV[i]] = past[2 * i + 1];
    });
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds);
    } catch (e) {
      throw new OnnxRuntimeError(
        `onnx cached stage ${spec.index}: onnxruntime-web (${this.executionProvider}) failed: ${message(e)}`,
      );
    }
    const present = io.presentK.flatMap((k, i) => [out[k], out[io.presentV[i]]]);
    const y = out[io.output];
    const data = await y.getData(true);
    if (!(data instanceof Float32Array))
      throw new OnnxRuntimeError(`onnx cached stage ${spec.index}: expected float32 output, got ${y.type}`);
    return { output: data, present };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
