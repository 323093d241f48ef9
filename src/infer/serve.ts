/**
 * `/tessera/infer/1.0.0` on a stage holder: one request/response per stream. The requester (the coordinator's
 * inference backend) walks a generation through the stages: token ids into stage 0, activations on, and at the
 * last stage the next token, sampled there with the session's seeded sampler. Only activations and token ids
 * cross the wire — never weights — and each holder answers only for the stage it holds, with its current
 * weights (a training step between two tokens applies to the next one).
 *
 * Request: JSON { model, stage, session, ids?: number[], rows?: number, sampling?: SamplingOptions, end?: true,
 * unit?: number, audit?: true, targets?: number[] } then rows·dModel float32 (little-endian) when rows is given.
 * Answer: JSON { ok: true, length, rows?, token?, loss?, receipt? } then rows·dModel float32 (not at the last
 * stage), or { ok: false, error }. A request with a `unit` is answered with this peer's signed receipt of the
 * hop (hop-receipt.ts); `targets` at the last stage asks for the mean cross-entropy instead of a token (the
 * coordinator's validation loss).
 */
import type { Connection, Libp2p, PrivateKey, Stream } from '@libp2p/interface';
import type { SignedReceipt } from '../ledger/receipt.ts';
import { stageIncrementalFlops } from '../model/flops.ts';
import { crossEntropyRef } from '../ops/crossentropy.ref.ts';
import type { GpuTurns } from '../gpu/gpu-turns.ts';
import { bytesOf, hopReceipt } from './hop-receipt.ts';
import { ShapeError } from '../gpu/index.ts';
import type { Stage } from '../model/stage.ts';
import { abortOn, StreamReader, WireError, withTimeout, writeBytes, writeJson } from '../net/stream-io.ts';
import { Sampler, type SamplingOptions } from './sample.ts';
import {
  chooseRuntime,
  WgslRuntime,
  type RuntimeMeasurement,
  type RuntimeMode,
  type StageRuntime,
  type StageRuntimeName,
  type StageRuntimeOptions,
} from './stage-runtime.ts';

export const INFER_PROTOCOL = '/tessera/infer/1.0.0';
const MAX_REQUEST_JSON = 256 * 1024;
/** A held stage's runtime is chosen this long after it is first held, if no request chose it before. */
const CHOOSE_AFTER_MS = 120_000;

export interface InferRequest {
  model: string;
  stage: number;
  session: string;
  ids?: number[];
  rows?: number;
  sampling?: SamplingOptions;
  end?: boolean;
  /** The requester's hop number: answer with a signed receipt of it. */
  unit?: number;
  /** This hop replays another replica's, to check it (its receipt is an infer-audit). */
  audit?: boolean;
  /** Last stage: score these next tokens (one per position) and answer the mean cross-entropy. */
  targets?: number[];
}

export type InferReply =
  | { ok: true; length: number; rows?: number; token?: number; loss?: number; receipt?: SignedReceipt }
  | { ok: false; error: string };

/** What this peer holds now (null: nothing to serve), and where it sits (for receipts). */
export type HeldForInference = () => {
  modelId: string;
  stage: Stage;
  round?: number;
  replica?: number;
  replicas?: number;
} | null;

/** The runtime serving the held stage, and why (InferenceServer.stats.runtime). */
export interface ServingRuntime {
  stage: number;
  name: StageRuntimeName;
  mode: RuntimeMode;
  reason: string;
  /** With mode 'auto': both runtimes' figures on this device. */
  measured?: RuntimeMeasurement[];
}

export class InferenceServer {
  readonly stats: { served: number; refused: number; runtime?: ServingRuntime } = { served: 0, refused: 0 };
  private readonly node: Libp2p;
  private readonly held: HeldForInference;
  private readonly log: (line: string) => void;
  private readonly key?: PrivateKey;
  /** The device's turns, shared with training (src/gpu/gpu-turns.ts): each request's compute is one 'infer' turn. */
  private readonly turns?: GpuTurns;
  private engine?: Engine;
  private readonly runtimeMode: RuntimeMode;
  private watch?: ReturnType<typeof setInterval>;
  private readonly samplers = new Map<string, Sampler>();

  /**
   * `key`: this peer's libp2p key, to sign hop receipts (none: hops are served unreceipted). `runtime`: how the
   * held stage runs (stage-runtime.ts); 'auto' (default) measures WGSL and onnxruntime-web on this device
   * whenever the held stage changes and serves with the faster (stats.runtime says which, and why). `turns`:
   * the device's arbiter shared with training (the worker's), so the inference/training priority and the
   * GPU-use cap apply to inference too; a paused peer refuses at once, so the requester moves to a replica.
   */
  constructor(o: {
    node: Libp2p;
    held: HeldForInference;
    log?: (line: string) => void;
    key?: PrivateKey;
    runtime?: RuntimeMode;
    turns?: GpuTurns;
  }) {
    this.runtimeMode = o.runtime ?? 'auto';
    this.turns = o.turns;
    this.node = o.node;
    this.held = o.held;
    this.log = o.log ?? (() => {});
    this.key = o.key;
  }

  async start(): Promise<void> {
    await this.node.handle(INFER_PROTOCOL, (stream, connection) => this.serve(stream, connection));
    // Choose the runtime in the background (measuring takes a moment), once the stage has been held for a while:
    // right after a move the worker is busy fetching weights, connecting and loading data, and seconds of
    // compiling and measuring then would stall its heartbeats. A request before that is served by WGSL at once and
    // starts the choice.
    let seen: { stage: Stage; since: number } | undefined;
    this.watch = setInterval(() => {
      const held = this.held();
      if (!held) return;
      if (seen?.stage !== held.stage) seen = { stage: held.stage, since: Date.now() };
      else if (Date.now() - seen.since >= CHOOSE_AFTER_MS) this.choose(this.engineFor(held.stage));
    }, 3000);
    (this.watch as { unref?: () => void }).unref?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.watch);
    await this.node.unhandle(INFER_PROTOCOL);
    this.engine?.destroy();
    this.engine = undefined;
  }

  /** The serving state of the stage held now (a new stage — a move — starts with empty caches). */
  private engineFor(stage: Stage): Engine {
    if (this.engine?.stage !== stage) {
      this.engine?.destroy();
      this.samplers.clear();
      this.engine = new Engine(stage, {
        // Sessions of a generation stay evictable only after 60 s idle: decode steps come every few ms.
        maxSessions: 16,
        evictableAfterMs: 60_000,
        idleTimeoutMs: 300_000,
        onEvict: (s) => {
          this.samplers.delete(s);
          this.engine?.sessions.delete(s);
        },
      });
      // Set to one runtime: nothing to measure. 'onnx' is chosen before serving (requests wait for it).
      if (this.runtimeMode !== 'auto') this.choose(this.engine);
    }
    return this.engine;
  }

  /** Starts choosing the engine's runtime (once); new sessions go to the chosen one when it is ready. */
  private choose(engine: Engine): Promise<void> {
    engine.choosing ??= chooseRuntime(engine.stage, this.runtimeMode, engine.options).then(
      (c) => {
        if (this.engine !== engine) return c.runtime.destroy();
        engine.chosen = c.runtime;
        this.stats.runtime = {
          stage: engine.stage.spec.index,
          name: c.runtime.name,
          mode: this.runtimeMode,
          reason: c.reason,
          measured: c.measured,
        };
        this.log(
          `inference runtime for stage ${engine.stage.spec.index}/${engine.stage.spec.count}: ` +
            `${c.runtime.name} (${c.reason})`,
        );
      },
      (e) => this.log(`choosing the inference runtime failed (${(e as Error).message}): WGSL serves`),
    );
    return engine.choosing;
  }

  /** The runtime serving `session`: the one it opened on, else (a new session) the chosen one, or WGSL until then. */
  private async runtimeFor(engine: Engine, session: string): Promise<StageRuntime> {
    const open = engine.sessions.get(session);
    if (open?.has(session)) return open;
    if (this.runtimeMode === 'onnx') await this.choose(engine);
    else if (!engine.chosen) void this.choose(engine);
    const runtime = engine.chosen ?? engine.wgsl();
    engine.sessions.set(session, runtime);
    return runtime;
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const signal = withTimeout(60_000);
    const release = abortOn(stream, signal);
    const reader = new StreamReader(stream);
    const from = connection.remotePeer.toString();
    try {
      let reply: InferReply;
      let payload: Uint8Array | undefined;
      try {
        const req = parse(await reader.readJson(MAX_REQUEST_JSON, 'inference request'));
        const held = this.held();
        if (!held || held.modelId !== req.model || held.stage.spec.index !== req.stage) {
          throw new ShapeError(`this peer does not hold stage ${req.stage} of ${req.model}`);
        }
        const { stage } = held;
        const serving = this.engineFor(stage);
        const engine = await this.runtimeFor(serving, req.session);
        if (req.end) {
          engine.end(req.session);
          serving.sessions.delete(req.session);
          this.samplers.delete(req.session);
          reply = { ok: true, length: 0 };
        } else {
          const C = stage.cfg.dModel;
          let input: Int32Array | Float32Array;
          if (stage.spec.hasEmbedding) {
            if (!req.ids) throw new ShapeError('stage 0 takes token ids');
            input = Int32Array.from(req.ids);
          } else {
            if (!req.rows) throw new ShapeError(`stage ${req.stage} takes activations (rows)`);
            if (req.rows > stage.cfg.context)
              throw new ShapeError(`${req.rows} rows exceed the context of ${stage.cfg.context}`);
            const bytes = await reader.read(req.rows * C * 4, 'activations');
            input = new Float32Array(bytes.slice().buffer); // non-finite activations are refused by the runtime
          }
          const positions = stage.spec.hasEmbedding ? input.length : input.length / C;
          const scoring = stage.spec.hasHead && req.targets !== undefined;
          if (scoring && req.targets!.length !== positions)
            throw new ShapeError(`${req.targets!.length} targets for ${positions} positions`);
          const decode = engine.has(req.session) && !scoring && positions === 1;
          if (this.turns?.paused) throw new Error('this peer is paused (its volunteer paused it): ask a replica');
          const step = () => engine.step(req.session, input, !decode, { logits: scoring ? 'all' : 'last' });
          // Only the compute and its read-back hold the device's turn, never the stream I/O around it.
          const r = this.turns ? await this.turns.run('infer', step, { signal }) : await step();
          let output: Float32Array;
          if (stage.spec.hasHead) {
            const logits = r.logits!;
            const V = stage.cfg.vocab;
            if (scoring) {
              // The float64 reference the kernels are checked against (a target outside the vocabulary is refused).
              reply = { ok: true, length: r.length, loss: crossEntropyRef(logits, req.targets!, positions, V).loss };
              output = logits;
            } else {
              let sampler = this.samplers.get(req.session);
              if (!sampler) this.samplers.set(req.session, (sampler = new Sampler(req.sampling ?? { temperature: 0 })));
              output = logits.subarray(logits.length - V);
              reply = { ok: true, length: r.length, token: sampler.next(output) };
            }
          } else {
            output = r.output!;
            payload = new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
            reply = { ok: true, length: r.length, rows: output.length / C };
          }
          if (req.unit !== undefined && this.key && !scoring) {
            const t = r.length - r.start;
            reply.receipt = await hopReceipt(
              this.key,
              {
                model: req.model,
                round: held.round ?? 0,
                stage: req.stage,
                replica: held.replica ?? 0,
                replicas: held.replicas ?? 1,
                step: r.weightsStep,
                sessionStep: r.sessionStep,
                peerId: this.node.peerId.toString(),
              },
              {
                unit: req.unit,
                audit: req.audit === true,
                flops: stageIncrementalFlops(stage.cfg, stage.spec, t, r.start, 1),
                input: bytesOf(input),
                output,
              },
            );
          }
          this.stats.served++;
        }
      } catch (e) {
        // The requester went away before its request was whole: nothing was refused, and nobody reads a reply.
        if (e instanceof WireError && e.cutShort) throw e;
        this.stats.refused++;
        this.log(`inference request from ${from.slice(-6)} refused: ${(e as Error).message}`);
        reply = { ok: false, error: (e as Error).message.slice(0, 500) };
      }
      await writeJson(stream, reply, signal);
      if (payload) await writeBytes(stream, payload, signal);
      await stream.close({ signal });
    } catch (e) {
      this.log(`inference stream from ${from.slice(-6)} failed: ${(e as Error).message}`);
      stream.abort(e as Error);
    } finally {
      release();
      reader.dispose();
    }
  }
}

function parse(v: unknown): InferRequest {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ShapeError('inference request is not a JSON object');
  const o = v as Record<string, unknown>;
  if (typeof o.model !== 'string' || typeof o.session !== 'string' || o.session.length > 100)
    throw new ShapeError('inference request needs model and session strings');
  if (!Number.isInteger(o.stage) || (o.stage as number) < 0)
    throw new ShapeError('inference request stage must be an integer ≥ 0');
  if (
    o.ids !== undefined &&
    (!Array.isArray(o.ids) ||
      o.ids.length === 0 ||
      o.ids.length > 1_000_000 ||
      !o.ids.every((x) => Number.isInteger(x)))
  )
    throw new ShapeError('ids must be a non-empty array of integers');
  if (o.rows !== undefined && (!Number.isInteger(o.rows) || (o.rows as number) < 1))
    throw new ShapeError('rows must be a positive integer');
  if (o.unit !== undefined && (!Number.isSafeInteger(o.unit) || (o.unit as number) < 0))
    throw new ShapeError('unit must be a non-negative integer');
  if (o.audit !== undefined && typeof o.audit !== 'boolean') throw new ShapeError('audit must be a boolean');
  if (
    o.targets !== undefined &&
    (!Array.isArray(o.targets) || o.targets.length === 0 || !o.targets.every((x) => Number.isInteger(x) && x >= 0))
  )
    throw new ShapeError('targets must be a non-empty array of token ids');
  return o as unknown as InferRequest;
}

/**
 * What serves one held stage: a WGSL runtime from the first request, the measured choice once it is ready, and
 * which runtime each open session lives on (a session stays where its KV cache is).
 */
class Engine {
  readonly stage: Stage;
  readonly options: StageRuntimeOptions;
  readonly sessions = new Map<string, StageRuntime>();
  chosen?: StageRuntime;
  choosing?: Promise<void>;
  private first?: WgslRuntime;

  constructor(stage: Stage, options: StageRuntimeOptions) {
    this.stage = stage;
    this.options = options;
  }

  /** The WGSL runtime that serves until the choice is made (made on first use). */
  wgsl(): StageRuntime {
    return (this.first ??= new WgslRuntime(this.stage, this.options));
  }

  destroy(): void {
    this.first?.destroy();
    if (this.chosen !== this.first) this.chosen?.destroy();
    // A choice still being measured is destroyed when it lands (InferenceServer.choose checks the engine).
    this.sessions.clear();
  }
}
