/**
 * `/tessera/stage/1.0.0`: a peer that takes over a stage (a newcomer, or a peer the coordinator moved) asks a
 * current holder of that stage for its checkpoint — weights, AdamW moments and optimizer step, the safetensors
 * file of src/model/checkpoint.ts — at one training step.
 *
 *   asker → holder   request  { model, stage, step }                      (length-prefixed JSON, ≤ 1 KiB)
 *   holder → asker   reply    { ok: true, model, stage, step, bytes, sha256 }
 *                          | { ok: false, code, error }                    (length-prefixed JSON, ≤ 4 KiB)
 *   holder → asker   `bytes` bytes of the checkpoint, in ≤ 64 KiB chunks with backpressure
 *
 * The holder serves only the stage the asker is assigned in the coordinator assignment the holder last saw,
 * and only at the step asked (a holder still rolling back or training answers `not-ready`, and the asker
 * tries again). The asker refuses a reply larger than its stage can be, checks the SHA-256 of the bytes
 * against the reply, and parses them with readCheckpoint against its own view of the model and stage (content
 * hash, format, config, spec, every tensor's name, dtype, shape and finiteness) before anything reaches a GPU.
 * Never more than that one stage is asked for or sent.
 */
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import { TesseraError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { CheckpointError, readCheckpoint, type StageCheckpoint } from '../model/checkpoint.ts';
import { stageParamSpecs } from '../model/params.ts';
import { sha256Hex } from '../model/safetensors.ts';
import type { StageSpec } from '../model/stages.ts';
import { abortOn, openStream, StreamReader, WireError, withTimeout, writeBytes, writeJson } from './stream-io.ts';

export const STAGE_PROTOCOL = '/tessera/stage/1.0.0';

const MAX_REQUEST_BYTES = 1024;
const MAX_REPLY_BYTES = 4096;

export interface StageRequest {
  model: string;
  stage: number;
  /** Training step the checkpoint must stand at (the number of steps whose update it has applied). */
  step: number;
}

/**
 * Why a holder refused: transient ones (not-ready, not-assigned while its view of the assignment is stale) are worth a
 * retry.
 */
export type RefusalCode = 'bad-request' | 'not-assigned' | 'not-held' | 'not-ready' | 'internal';

export type StageReply =
  | { ok: true; model: string; stage: number; step: number; bytes: number; sha256: string }
  | { ok: false; code: RefusalCode; error: string };

export type TransferProblem = RefusalCode | 'protocol' | 'size' | 'hash' | 'checkpoint';

/** A transfer failed; `problem` says where (a holder's refusal code, or what the asker found wrong). */
export class StageTransferError extends TesseraError {
  readonly problem: TransferProblem;
  constructor(problem: TransferProblem, message: string) {
    super('stage-transfer', `stage transfer: ${message}`);
    this.problem = problem;
  }
}

/** What a holder serves from. */
export interface StageSource {
  /** The stage `peerId` is assigned in `model` in the assignment this holder last saw (undefined: none). */
  assignedStage(model: string, peerId: string): number | undefined;
  /** The checkpoint of `stage` at training step `step`, or why not. */
  checkpoint(
    model: string,
    stage: number,
    step: number,
  ): Promise<Uint8Array | { code: 'not-held' | 'not-ready'; error: string }>;
}

export interface TransferLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface StageServerStats {
  served: number;
  refused: number;
  bytesSent: number;
  /** Largest chunk handed to a stream (≤ 64 KiB by construction; tests check it). */
  largestChunk: number;
}

/** Largest checkpoint a stage can have: three F32 tensors (weight, m, v) per parameter plus a generous header. */
export function maxCheckpointBytes(cfg: ModelConfig, spec: StageSpec): number {
  const specs = stageParamSpecs(cfg, spec);
  const values = specs.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  return 3 * 4 * values + 8 + 64 * 1024 + 3 * 256 * specs.length;
}

function parseRequest(raw: unknown): StageRequest {
  const o = raw as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new WireError('request is not a JSON object');
  if (typeof o.model !== 'string' || o.model.length === 0 || o.model.length > 256)
    throw new WireError('request.model must be a non-empty string of at most 256 characters');
  for (const k of ['stage', 'step'] as const) {
    if (typeof o[k] !== 'number' || !Number.isSafeInteger(o[k]) || (o[k] as number) < 0)
      throw new WireError(`request.${k} must be a non-negative integer`);
  }
  return { model: o.model, stage: o.stage as number, step: o.step as number };
}

/** The holder's side: answers requests for the stage it holds. */
export class StageServer {
  readonly stats: StageServerStats = { served: 0, refused: 0, bytesSent: 0, largestChunk: 0 };
  private readonly node: Libp2p;
  private readonly source: StageSource;
  private readonly log: TransferLogger;
  private readonly chunkBytes?: number;
  private readonly timeoutMs: number;
  private started = false;

  constructor(opts: {
    node: Libp2p;
    source: StageSource;
    log?: TransferLogger;
    chunkBytes?: number;
    timeoutMs?: number;
  }) {
    this.node = opts.node;
    this.source = opts.source;
    this.log = opts.log ?? { info: () => {}, warn: (m) => console.warn(m) };
    this.chunkBytes = opts.chunkBytes;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.node.handle(STAGE_PROTOCOL, (stream, connection) => this.serve(stream, connection));
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.node.unhandle(STAGE_PROTOCOL);
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString();
    const signal = withTimeout(this.timeoutMs);
    const release = abortOn(stream, signal);
    const reader = new StreamReader(stream);
    const refuse = async (code: RefusalCode, error: string) => {
      this.stats.refused++;
      this.log.warn(`stage transfer: refused ${from}: ${error}`);
      await writeJson(stream, { ok: false, code, error } satisfies StageReply, signal);
      await stream.close({ signal });
    };
    try {
      let req: StageRequest;
      try {
        req = parseRequest(await reader.readJson(MAX_REQUEST_BYTES, 'stage request'));
      } catch (e) {
        return await refuse('bad-request', (e as Error).message);
      }
      const assigned = this.source.assignedStage(req.model, from);
      if (assigned !== req.stage) {
        return await refuse(
          'not-assigned',
          `${from} asked for stage ${req.stage} of ${req.model} but is assigned ` +
            `${assigned === undefined ? 'no stage of it' : `stage ${assigned}`}`,
        );
      }
      const got = await this.source.checkpoint(req.model, req.stage, req.step);
      if (!(got instanceof Uint8Array)) return await refuse(got.code, got.error);
      const sha256 = await sha256Hex(got);
      await writeJson(
        stream,
        {
          ok: true,
          model: req.model,
          stage: req.stage,
          step: req.step,
          bytes: got.length,
          sha256,
        } satisfies StageReply,
        signal,
      );
      const largest = await writeBytes(stream, got, signal, this.chunkBytes);
      await stream.close({ signal });
      this.stats.served++;
      this.stats.bytesSent += got.length;
      this.stats.largestChunk = Math.max(this.stats.largestChunk, largest);
      this.log.info(
        `stage transfer: served stage ${req.stage} of ${req.model} at step ${req.step} to ${from}: ` +
          `${got.length} bytes, sha256 ${sha256}`,
      );
    } catch (e) {
      this.log.warn(`stage transfer to ${from} failed: ${(e as Error).message}`);
      stream.abort(e as Error);
    } finally {
      reader.dispose();
      release();
    }
  }
}

export interface FetchedStage {
  checkpoint: StageCheckpoint;
  /** The checkpoint file exactly as received (and verified). */
  bytes: Uint8Array;
  /** SHA-256 of the whole file (what the holder announced). */
  sha256: string;
  from: string;
}

/**
 * Asks `holder` for `req.stage` at `req.step` and returns the verified checkpoint. `expect` is the asker's
 * own view of the model and the stage (from its assignment): the file must match it exactly. Throws
 * StageTransferError (the holder refused, the size or hash is wrong, the stream broke) or, wrapped in one
 * with problem 'checkpoint', the CheckpointError that readCheckpoint raised.
 */
export async function fetchStage(
  node: Libp2p,
  holder: PeerId | string,
  req: StageRequest,
  expect: { cfg: ModelConfig; spec: StageSpec },
  opts: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<FetchedStage> {
  if (expect.spec.index !== req.stage)
    throw new StageTransferError(
      'bad-request',
      `asking for stage ${req.stage} while expecting stage ${expect.spec.index}`,
    );
  const signal = withTimeout(opts.timeoutMs ?? 120_000, opts.signal);
  const from = holder.toString();
  let stream: Stream;
  try {
    stream = await openStream(node, holder, STAGE_PROTOCOL, signal);
  } catch (e) {
    throw new StageTransferError('protocol', (e as Error).message);
  }
  const release = abortOn(stream, signal);
  const reader = new StreamReader(stream);
  try {
    await writeJson(stream, req, signal);
    await stream.close({ signal });
    const reply = (await reader.readJson(MAX_REPLY_BYTES, 'stage reply')) as Partial<Record<string, unknown>>;
    if (typeof reply !== 'object' || reply === null)
      throw new StageTransferError('protocol', `${from} sent a reply that is not an object`);
    if (reply.ok === false) {
      const codes: RefusalCode[] = ['bad-request', 'not-assigned', 'not-held', 'not-ready', 'internal'];
      const code = codes.includes(reply.code as RefusalCode) ? (reply.code as RefusalCode) : 'internal';
      throw new StageTransferError(code, `${from} refused: ${String(reply.error ?? 'no reason').slice(0, 300)}`);
    }
    if (reply.ok !== true || reply.model !== req.model || reply.stage !== req.stage || reply.step !== req.step) {
      throw new StageTransferError(
        'protocol',
        `${from} answered for ${String(reply.model)} stage ${String(reply.stage)} step ${String(reply.step)}, ` +
          `not what was asked`,
      );
    }
    const limit = maxCheckpointBytes(expect.cfg, expect.spec);
    const n = reply.bytes;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0 || n > limit) {
      throw new StageTransferError('size', `${from} announced ${String(n)} bytes; stage ${req.stage} fits in ${limit}`);
    }
    if (typeof reply.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(reply.sha256))
      throw new StageTransferError('protocol', `${from} sent no valid sha256`);
    const bytes = await reader.read(n, `stage ${req.stage} checkpoint`);
    if (!(await reader.atEnd()))
      throw new StageTransferError('size', `${from} sent more than the ${n} bytes it announced`);
    const sha256 = await sha256Hex(bytes);
    if (sha256 !== reply.sha256)
      throw new StageTransferError('hash', `the bytes from ${from} hash to ${sha256}, the reply said ${reply.sha256}`);
    let checkpoint: StageCheckpoint;
    try {
      checkpoint = await readCheckpoint(bytes, expect);
    } catch (e) {
      if (e instanceof CheckpointError) throw new StageTransferError('checkpoint', `${from}: ${e.message}`);
      throw e;
    }
    return { checkpoint, bytes, sha256, from };
  } catch (e) {
    stream.abort(e as Error);
    if (e instanceof StageTransferError) throw e;
    throw new StageTransferError('protocol', `from ${from}: ${(e as Error).message}`);
  } finally {
    reader.dispose();
    release();
  }
}
