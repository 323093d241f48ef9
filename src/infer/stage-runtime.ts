/**
 * How a stage holder runs inference for its stage (issue 7, point 5): our WGSL kernels (StageInference) or
 * onnxruntime-web (the KV-cached ONNX graph of onnx-infer.ts, on the WebGPU EP in a browser, wasm in Node).
 * Both keep per-session KV caches, bounded and evicted alike (KvCacheOptions), take host input and give host
 * output, so the server (serve.ts) can swap one for the other; measureRuntimes() times both on this device and
 * chooses the faster.
 */
import type * as ort from 'onnxruntime-web';
import { ArgumentError, ShapeError, TokenRangeError } from '../gpu/index.ts';
import type { Stage } from '../model/stage.ts';
import { Rng } from '../ops/rng.ts';
import { KvCache, UnknownSessionError } from './kv-cache.ts';
import { OnnxCachedRunner, type OnnxCachedRunnerOptions } from './onnx-infer.ts';
import { StageInference, type StageInferenceOptions } from './stage-infer.ts';

export type StageRuntimeName = 'wgsl' | 'onnx-wasm' | 'onnx-webgpu';

export interface StageRuntimeStep {
  /** Activations [t, dModel] of the new rows, for the next stage (not on the last stage). */
  output?: Float32Array;
  /** Last stage: logits [vocab] of the last new row, or [t, vocab] of every new row with `{ logits: 'all' }`. */
  logits?: Float32Array;
  /** Positions of the new rows: [start, start + t). */
  start: number;
  /** Positions the session holds now. */
  length: number;
  /** The optimizer step of the weights this step computed with. */
  weightsStep: number;
  /** The optimizer step of the weights the session's first positions were computed with (its oldest cache). */
  sessionStep: number;
}

export interface StageRuntime {
  readonly name: StageRuntimeName;
  /**
   * Runs the new positions of `session`: token ids at stage 0, activations [t, dModel] after. With `create`
   * the session is opened if new (or continued: a prompt in chunks); without, it must be open (decode).
   * Bad input (wrong kind or shape, ids out of range, non-finite activations) is refused before anything runs.
   */
  step(
    session: string,
    input: Int32Array | Float32Array,
    create: boolean,
    opts?: StepOptions,
  ): Promise<StageRuntimeStep>;
  has(session: string): boolean;
  /** Drops a session's cache; false if it had none. */
  end(session: string): boolean;
  destroy(): void;
}

export type StageRuntimeOptions = StageInferenceOptions;

export interface StepOptions {
  /** Last stage: 'last' (default) for the last new row's logits (sampling), 'all' for every new row's (scoring). */
  logits?: 'last' | 'all';
}

/** New positions in `input` after checking it fits `stage` (the same rules for both runtimes). */
export function checkStageInput(stage: Stage, input: Int32Array | Float32Array): number {
  const { cfg, spec } = stage;
  if (spec.hasEmbedding) {
    if (!(input instanceof Int32Array)) throw new ShapeError('stage 0 takes token ids (Int32Array), not activations');
    if (input.length < 1) throw new ShapeError('stage 0: no token ids');
    const bad = input.findIndex((id) => id < 0 || id >= cfg.vocab);
    if (bad >= 0) throw new TokenRangeError(`token id ${input[bad]} at position ${bad} is outside [0, ${cfg.vocab})`);
    return input.length;
  }
  if (!(input instanceof Float32Array))
    throw new ShapeError(`stage ${spec.index} takes activations [t, ${cfg.dModel}] (Float32Array), not token ids`);
  if (input.length < 1 || input.length % cfg.dModel !== 0)
    throw new ShapeError(`stage ${spec.index}: ${input.length} activations are not t rows of ${cfg.dModel}`);
  const bad = input.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new ShapeError(`stage ${spec.index}: activation ${bad} is ${input[bad]}: refused`);
  return input.length / cfg.dModel;
}

/** Our WGSL kernels: StageInference with the stage's live weights, its output read back to the host. */
export class WgslRuntime implements StageRuntime {
  readonly name = 'wgsl' as const;
  readonly inference: StageInference;

  constructor(stage: Stage, opts: StageRuntimeOptions) {
    this.inference = new StageInference(stage, opts);
  }

  async step(
    session: string,
    input: Int32Array | Float32Array,
    create: boolean,
    opts: StepOptions = {},
  ): Promise<StageRuntimeStep> {
    const { stage } = this.inference;
    checkStageInput(stage, input);
    const all = opts.logits === 'all';
    // decode() gives the last row's logits only: a scoring step of an open session runs as prefill() (which continues
    // it).
    if (!create && !this.has(session))
      throw new UnknownSessionError(
        `session ${JSON.stringify(session)} has no KV cache on this stage (never prefilled, ended, or ` +
          `evicted): prefill it again`,
      );
    // WGSL computes with the stage's live weights; the cache keeps what earlier steps computed.
    const weightsStep = stage.step;
    const r =
      create || all
        ? this.inference.prefill(session, input, { logits: all ? 'all' : 'last' })
        : this.inference.decode(session, input);
    const out = (r.output ?? r.logits)!;
    const steps = { weightsStep, sessionStep: this.inference.session(session)?.weightsStep ?? weightsStep };
    try {
      const data = (await stage.gpu.read(out)) as Float32Array;
      return r.logits
        ? {
            logits: all ? data : data.subarray(data.length - stage.cfg.vocab),
            start: r.start,
            length: r.length,
            ...steps,
          }
        : { output: data, start: r.start, length: r.length, ...steps };
    } finally {
      stage.gpu.release(out);
    }
  }

  has(session: string): boolean {
    return this.inference.cache.has(session);
  }

  end(session: string): boolean {
    return this.inference.end(session);
  }

  destroy(): void {
    this.inference.destroy();
  }
}

export interface OnnxRuntimeOptions extends StageRuntimeOptions, OnnxCachedRunnerOptions {}

/** One export of the stage's weights and the sessions computed with it. */
interface WeightsVersion {
  runner: OnnxCachedRunner;
  sessions: number;
}

/** A session's cached keys and values: `past` (k, v per layer) feeds its next step. */
interface SessionKv {
  version: WeightsVersion;
  past: ort.Tensor[];
  /** A step of it is running: its tensors are that run's inputs. */
  busy: boolean;
  ended: boolean;
}

/** The stage's weights and the optimizer step they are of, read when no update landed in between. */
async function readWeights(stage: Stage): Promise<{ weights: Map<string, Float32Array>; step: number }> {
  // readParams queues every copy synchronously, and an update bumps stage.step and queues all its writes in one
  // synchronous pass too (Stage.applyStep): the step read here is exactly the snapshot's, even while training.
  const step = stage.step;
  return { weights: await stage.readParams(), step };
}

/**
 * onnxruntime-web on the KV-cached ONNX graph of the stage. The graph holds a snapshot of the weights: when
 * the stage has trained since (stage.step moved), a NEW session gets a fresh export; an open session keeps
 * the weights its cache was computed with, as StageInference's do. Each session's K/V are ORT tensors (JS
 * memory on wasm, GPU buffers on WebGPU); positions, recency and eviction are a KvCache's bookkeeping
 * (with no layers: it holds no GPU memory), so the bounds are those of StageInference. Runs are serialized:
 * one ORT session must not run twice at once.
 */
export class OnnxRuntime implements StageRuntime {
  readonly name: 'onnx-wasm' | 'onnx-webgpu';
  readonly stage: Stage;
  /** Exports made (the first one included). */
  exports = 1;
  private current: WeightsVersion;
  private readonly book: KvCache;
  private readonly kv = new Map<string, SessionKv>();
  private readonly opts: OnnxRuntimeOptions;
  private queue: Promise<unknown> = Promise.resolve();
  private destroyed = false;

  private constructor(stage: Stage, runner: OnnxCachedRunner, opts: OnnxRuntimeOptions) {
    this.stage = stage;
    this.opts = opts;
    this.name = runner.executionProvider === 'webgpu' ? 'onnx-webgpu' : 'onnx-wasm';
    this.current = { runner, sessions: 0 };
    const max = opts.maxTokensPerSession ?? stage.cfg.context;
    if (max > stage.cfg.context)
      throw new ArgumentError(
        `OnnxRuntime: maxTokensPerSession ${max} exceeds the model's context ${stage.cfg.context}`,
      );
    this.book = new KvCache(
      stage.gpu,
      { layers: 0, channels: stage.cfg.dModel },
      {
        ...opts,
        maxTokensPerSession: max,
        onEvict: (id, reason) => {
          this.drop(id);
          opts.onEvict?.(id, reason);
        },
      },
    );
  }

  /** Exports the stage's current weights and opens an ORT session on the first execution provider that loads it. */
  static async create(stage: Stage, opts: OnnxRuntimeOptions): Promise<OnnxRuntime> {
    const { weights, step } = await readWeights(stage);
    return new OnnxRuntime(stage, await OnnxCachedRunner.create(stage.cfg, stage.spec, weights, step, opts), opts);
  }

  /** The optimizer step of the weights new sessions get. */
  get weightsStep(): number {
    return this.current.runner.step;
  }

  /** The step of the weights an open session's cache was computed with. */
  sessionWeightsStep(session: string): number | undefined {
    return this.kv.get(session)?.version.runner.step;
  }

  step(
    session: string,
    input: Int32Array | Float32Array,
    create: boolean,
    opts: StepOptions = {},
  ): Promise<StageRuntimeStep> {
    const run = this.queue.then(() => this.run(session, input, create, opts.logits === 'all'));
    this.queue = run.catch(() => {});
    return run;
  }

  has(session: string): boolean {
    return this.book.has(session);
  }

  end(session: string): boolean {
    this.drop(session);
    return this.book.end(session);
  }

  /** Host (or, on WebGPU, device) bytes the cached K/V take, and the sessions holding them. */
  stats(): { sessions: number; tokens: number; bytes: number; evictions: number } {
    const { sessions, tokens, evictions } = this.book.stats();
    const layers = this.stage.spec.endLayer - this.stage.spec.firstLayer;
    return { sessions, tokens, bytes: tokens * layers * 2 * this.stage.cfg.dModel * 4, evictions };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const id of this.book.ids()) this.end(id);
    // After the step in flight, if any: its session must not be released under it.
    const runner = this.current.runner;
    void this.queue.then(() => runner.release()).catch(() => {});
  }

  private async run(
    id: string,
    input: Int32Array | Float32Array,
    create: boolean,
    allLogits: boolean,
  ): Promise<StageRuntimeStep> {
    if (this.destroyed) throw new ArgumentError(`onnx runtime of stage ${this.stage.spec.index} was destroyed`);
    const t = checkStageInput(this.stage, input);
    const open = this.kv.get(id);
    if (!open && !create)
      throw new UnknownSessionError(
        `session ${JSON.stringify(id)} has no KV cache on this stage (never prefilled, ended, or evicted): ` +
          `prefill it again`,
      );
    if (!open && this.stage.step !== this.current.runner.step) await this.reexport();
    const s = this.book.reserve(id, t, create); // may evict (and drop) others; throws when the session is full
    const entry: SessionKv = open ?? {
      version: this.current,
      past: this.current.runner.emptyPast(),
      busy: false,
      ended: false,
    };
    if (!open) {
      entry.version.sessions++;
      this.kv.set(id, entry);
    }
    const start = s.length;
    let r;
    entry.busy = true;
    try {
      r = await entry.version.runner.run(input, start, entry.past, allLogits ? t : 1);
    } catch (e) {
      entry.busy = false;
      if (!open)
        this.end(id); // a new session that failed leaves nothing behind; an open one keeps its cache
      else if (entry.ended) this.release(entry);
      throw e;
    }
    entry.busy = false;
    for (const p of entry.past) p.dispose();
    entry.past = r.present;
    if (entry.ended) {
      // end() came while this step ran: its tensors were in use then, and are freed now.
      this.release(entry);
      throw new UnknownSessionError(`session ${JSON.stringify(id)} was ended while its step ran`);
    }
    this.book.commit(s, t);
    // A session runs on one export throughout: its weights are the export's.
    const step = entry.version.runner.step;
    const result = { start, length: s.length, weightsStep: step, sessionStep: step };
    return this.stage.spec.hasHead ? { ...result, logits: r.output } : { ...result, output: r.output };
  }

  /** Replaces the current export with the stage's weights now; the old one stays while open sessions use it. */
  private async reexport(): Promise<void> {
    const { weights, step } = await readWeights(this.stage);
    const runner = await OnnxCachedRunner.create(this.stage.cfg, this.stage.spec, weights, step, this.opts);
    const old = this.current;
    this.current = { runner, sessions: 0 };
    this.exports++;
    if (old.sessions === 0) await old.runner.release();
  }

  /** Forgets a session; its K/V are freed now, or by its running step when it ends (they are its inputs). */
  private drop(id: string): void {
    const entry = this.kv.get(id);
    if (!entry) return;
    this.kv.delete(id);
    entry.ended = true;
    if (!entry.busy) this.release(entry);
  }

  /** Frees an ended session's K/V and, when it was the last user of an old export, that export. */
  private release(entry: SessionKv): void {
    for (const p of entry.past) p.dispose();
    entry.past = [];
    if (--entry.version.sessions === 0 && entry.version !== this.current)
      void entry.version.runner.release().catch(() => {});
  }
}

// ---- choosing by measurement ---------------------------------------------------------------------------

export interface RuntimeMeasurement {
  name: StageRuntimeName;
  /** Prefill of the prompt: host input in, host output (last stage: the last row's logits) out. Median over rounds. */
  ttftMs: number;
  /** Decode steps of one position per second. Median over rounds. */
  tokensPerSecond: number;
  /** Prefill plus all decode steps: what the choice minimises. Median over rounds. */
  totalMs: number;
  /**
   * max |Δ| of its outputs (the prompt's and every decode step's) against the first runtime's on the same
   * inputs, over max(1, max |first's|): float32 noise (~1e-6) when both compute the same function. Absent
   * when the stage trained (stage.step moved) during each of 3 tries: WGSL computes with the live weights,
   * so outputs a step apart are not comparable.
   */
  relativeError?: number;
}

export interface MeasureOptions {
  /** Prompt positions of the measured session (default 16, capped to leave room for decodeTokens in the context). */
  promptTokens?: number;
  /** Decode steps after the prompt (default 8). */
  decodeTokens?: number;
  /** Timed rounds per runtime, alternating which goes first, after one untimed warm-up round (default 2). */
  rounds?: number;
  /**
   * Measure these (they are left open); default: a WgslRuntime and an OnnxRuntime made for the measurement and
   * destroyed after it.
   */
  runtimes?: StageRuntime[];
  /** For the default OnnxRuntime. */
  onnx?: OnnxCachedRunnerOptions;
}

export interface RuntimeChoice {
  results: RuntimeMeasurement[];
  /** The runtime with the least totalMs. */
  chosen: StageRuntimeName;
}

function relativeError(a: Float32Array[], ref: Float32Array[]): number {
  let diff = 0;
  let scale = 1;
  ref.forEach((r, k) => {
    if (a[k].length !== r.length) diff = Infinity;
    for (let j = 0; j < r.length; j++) {
      diff = Math.max(diff, Math.abs(a[k][j] - r[j]));
      scale = Math.max(scale, Math.abs(r[j]));
    }
  });
  return Number.isNaN(diff) ? Infinity : diff / scale;
}

/** A runtime further than this from WGSL (relativeError) is not chosen: float32 orderings differ by ~1e-6. */
export const RUNTIME_AGREEMENT = 1e-3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Times each runtime on this device as it serves: a prompt of promptTokens, then decodeTokens single-position
 * steps, host in and host out, with seeded inputs (ids at stage 0, activations after). The choice is the
 * runtime whose prompt + decode took least.
 */
export async function measureRuntimes(stage: Stage, opts: MeasureOptions = {}): Promise<RuntimeChoice> {
  const decodeTokens = opts.decodeTokens ?? 8;
  const rounds = opts.rounds ?? 2;
  const promptTokens = Math.min(opts.promptTokens ?? 16, stage.cfg.context - decodeTokens);
  if (!(Number.isInteger(decodeTokens) && decodeTokens >= 1))
    throw new ArgumentError(`measureRuntimes: decodeTokens must be a positive integer, got ${decodeTokens}`);
  if (!(Number.isInteger(promptTokens) && promptTokens >= 1))
    throw new ArgumentError(
      `measureRuntimes: promptTokens must be a positive integer within the context less decodeTokens, got ` +
        `${promptTokens}`,
    );
  if (!(Number.isInteger(rounds) && rounds >= 1))
    throw new ArgumentError(`measureRuntimes: rounds must be a positive integer, got ${rounds}`);
  const owned = !opts.runtimes;
  const runtimes = opts.runtimes ?? [
    new WgslRuntime(stage, { maxSessions: 1 }),
    await OnnxRuntime.create(stage, { maxSessions: 1, ...opts.onnx }),
  ];
  const rng = new Rng(stage.spec.index + 1);
  const { cfg, spec } = stage;
  const inputOf = (n: number): Int32Array | Float32Array =>
    spec.hasEmbedding
      ? Int32Array.from({ length: n }, () => rng.int(cfg.vocab))
      : Float32Array.from({ length: n * cfg.dModel }, () => rng.normal());
  const prompt = inputOf(promptTokens);
  const steps = Array.from({ length: decodeTokens }, () => inputOf(1));
  const times = runtimes.map(() => ({ ttft: [] as number[], tps: [] as number[], total: [] as number[] }));
  let outputs: Float32Array[][] | undefined;
  let n = 0;
  /** One session of `rt`: the prompt, then the decode steps; its outputs and times. */
  const run = async (rt: StageRuntime) => {
    const session = `measure-${rt.name}-${n++}`;
    const t0 = performance.now();
    const first = await rt.step(session, prompt, true);
    const t1 = performance.now();
    const rest: StageRuntimeStep[] = [];
    for (const x of steps) rest.push(await rt.step(session, x, false));
    const t2 = performance.now();
    rt.end(session);
    return { t0, t1, t2, outputs: [first, ...rest].map((r) => (r.output ?? r.logits)!) };
  };
  try {
    // Warm-up (pipelines compile, ORT plans its first runs), whose outputs are compared: retried when a
    // training step landed in between, since the runtimes would then have computed with different weights.
    for (let attempt = 0; attempt < 3 && !outputs; attempt++) {
      const step = stage.step;
      const outs: Float32Array[][] = [];
      for (const rt of runtimes) outs.push((await run(rt)).outputs);
      if (stage.step === step) outputs = outs;
    }
    for (let round = 1; round <= rounds; round++) {
      const order = runtimes.map((_, i) => i);
      if (round % 2) order.reverse();
      for (const i of order) {
        const { t0, t1, t2 } = await run(runtimes[i]);
        times[i].ttft.push(t1 - t0);
        times[i].tps.push(decodeTokens / ((t2 - t1) / 1000));
        times[i].total.push(t2 - t0);
      }
    }
  } finally {
    if (owned) for (const rt of runtimes) rt.destroy();
  }
  const results = runtimes.map((rt, i) => ({
    name: rt.name,
    ttftMs: median(times[i].ttft),
    tokensPerSecond: median(times[i].tps),
    totalMs: median(times[i].total),
    relativeError: outputs && relativeError(outputs[i], outputs[0]),
  }));
  const best = results.reduce((a, b) => (b.totalMs < a.totalMs ? b : a));
  return { results, chosen: best.name };
}

// ---- the choice a server makes ------------------------------------------------------------------------

/**
 * 'auto': measure both on this device and serve with the faster; 'wgsl' / 'onnx': that one (ONNX falls back to WGSL if
 * ORT cannot load).
 */
export type RuntimeMode = 'auto' | 'wgsl' | 'onnx';

export interface ChosenRuntime {
  runtime: StageRuntime;
  /** Why: the measurement, the mode, or ORT's failure. */
  reason: string;
  measured?: RuntimeMeasurement[];
  /** With 'auto': how long exporting the stage and opening ORT's session took. */
  exportMs?: number;
  /** With 'auto': the stage trained during the choice, so ORT's export was counted per generation. */
  training?: boolean;
}

function describeMeasurement(m: RuntimeMeasurement, i: number): string {
  const error =
    m.relativeError === undefined
      ? 'not compared: the stage trained during each try'
      : `relative error ${m.relativeError.toExponential(1)}`;
  return (
    `${m.name} TTFT ${m.ttftMs.toFixed(1)} ms, ${m.tokensPerSecond.toFixed(0)} ` +
    `tokens/s${i > 0 ? `, ${error}` : ''}`
  );
}

/**
 * The runtime a holder serves `stage` with. With 'auto', the one whose measured prompt + decode took least,
 * ORT's export time added when the stage trained meanwhile (each new generation would then re-export); an ORT
 * that disagrees with WGSL is never chosen. ORT's failure to load (no provider, a graph it rejects) or to run
 * the measurement leaves WGSL serving, with the reason; it never stops the holder from serving.
 */
export async function chooseRuntime(
  stage: Stage,
  mode: RuntimeMode,
  opts: OnnxRuntimeOptions & { measure?: Omit<MeasureOptions, 'runtimes'> },
): Promise<ChosenRuntime> {
  const { measure, ...runtimeOpts } = opts;
  if (mode === 'wgsl') return { runtime: new WgslRuntime(stage, runtimeOpts), reason: 'set to wgsl' };
  let onnx: OnnxRuntime;
  const step = stage.step;
  const t0 = performance.now();
  try {
    onnx = await OnnxRuntime.create(stage, runtimeOpts);
  } catch (e) {
    return {
      runtime: new WgslRuntime(stage, runtimeOpts),
      reason: `onnxruntime-web could not load the stage (${(e as Error).message}): WGSL serves`,
    };
  }
  if (mode === 'onnx') return { runtime: onnx, reason: 'set to onnx' };
  const exportMs = performance.now() - t0;
  const wgsl = new WgslRuntime(stage, runtimeOpts);
  try {
    const m = await measureRuntimes(stage, { ...measure, runtimes: [wgsl, onnx] });
    const error = m.results[1].relativeError;
    if (error !== undefined && !(error <= RUNTIME_AGREEMENT)) {
      onnx.destroy();
      return {
        runtime: wgsl,
        reason:
          `${onnx.name} disagrees with WGSL on this device (relative error ${error.toExponential(1)} > ` +
          `${RUNTIME_AGREEMENT}): WGSL serves`,
        measured: m.results,
      };
    }
    // A stage that trains while it serves gets a new export for nearly every new session (generation): then the
    // export counts against ORT once per measured session.
    const training = stage.step !== step;
    const [w, o] = m.results;
    const onnxMs = o.totalMs + (training ? exportMs : 0);
    const [keep, drop] = onnxMs < w.totalMs ? [onnx, wgsl] : [wgsl, onnx];
    drop.destroy();
    const exported =
      `ORT export ${exportMs.toFixed(0)} ` + `ms${training ? ', counted per generation: the stage is training' : ''}`;
    return {
      runtime: keep,
      reason: `measured: ${m.results.map(describeMeasurement).join('; ')}; ${exported}`,
      measured: m.results,
      exportMs,
      training,
    };
  } catch (e) {
    onnx.destroy();
    return { runtime: wgsl, reason: `measuring failed (${(e as Error).message}): WGSL serves` };
  }
}
