/**
 * Wire format of `/tessera/tensor/1.0.0`. One frame:
 *
 *   u32 big-endian header length | JSON header (UTF-8) | payload (payloadBytes) | token ids (idsCount × i32 LE)
 *
 * The header carries everything the receiver needs to validate the frame before it buffers the body:
 * the frame's head { model, fromStage, fromReplica, step, micro, kind, shape, codec } (FrameHead, the engine's own
 * definition) and { dtype, payloadBytes, idsCount, checksum }; per-kind caps come from the kinds table.
 * `dtype` is the element type of the decoded tensor (always 'f32' today); `codec` names the encoding of the
 * payload bytes ('none' = raw little-endian float32). `checksum` is the CRC-32 of payload then ids (see crc32.ts
 * for why CRC and not SHA-256). Unknown extra header fields are ignored (forward compatibility).
 */
import type { ModelConfig } from '../model/config.ts';
import { stageParamSpecs } from '../model/params.ts';
import { splitStages, type StageSpec } from '../model/stages.ts';
import { FRAME_KIND_SPECS, FRAME_KINDS, mayBeEmpty, type FrameKind } from '../train/frame-kinds.ts';
import { FrameError, type Frame, type FrameHead } from '../train/transport.ts';
import { crc32 } from './crc32.ts';

export { FrameError };

export const TENSOR_PROTOCOL = '/tessera/tensor/1.0.0';

/** Room for a long model name and codec; a real header is ~250 bytes. */
export const DEFAULT_MAX_HEADER_BYTES = 4096;

export interface FrameLimits {
  maxHeaderBytes: number;
  /** Largest payload of any kind. */
  maxPayloadBytes: number;
  /**
   * Tighter caps per kind (frameLimitsFor sets one for every kind); a kind without one is capped by maxPayloadBytes.
   */
  maxPayloadBytesByKind?: Partial<Record<FrameKind, number>>;
  /** Most token ids in one frame (default: maxPayloadBytes / 4). */
  maxIds?: number;
}

/**
 * The header as it travels: the frame's head (FrameHead, src/train/transport.ts: the same fields the engine
 * sees) plus what is needed to read and verify the body.
 */
export interface FrameHeader extends FrameHead {
  dtype: 'f32';
  payloadBytes: number;
  idsCount: number;
  checksum: number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const CODEC_NAME = /^[A-Za-z0-9+_.-]{1,64}$/;
const MAX_MODEL_NAME = 256;
/** Micro-batches per step an audit list may name. */
export const MAX_AUDIT_LIST = 1024;

/**
 * Limits derived from the model: act/grad carry [batch·context, dModel] float32 at most (the 'none' codec is
 * the largest; int8's rows·(4+dModel) is smaller for dModel ≥ 2 but covered anyway), gradsync carries one
 * stage's gradients (the receiver's own stage `own` when given — gradsync only comes from its replicas — else the
 * largest stage of an even `stages`-way split — with the default stages = 1 that is the
 * whole model's parameter count, a safe upper bound for any split), norm one float64. Ids: one per row.
 */
export function frameLimitsFor(cfg: ModelConfig, batch: number, stages = 1, own?: StageSpec): FrameLimits {
  for (const [k, v] of [
    ['batch', batch],
    ['stages', stages],
    ['dModel', cfg.dModel],
    ['context', cfg.context],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1)
      throw new FrameError(`frame limits: ${k} must be a positive integer, got ${v}`);
  }
  const rows = batch * cfg.context;
  const boundary = rows * Math.max(4 * cfg.dModel, 4 + cfg.dModel);
  const stageParams = Math.max(
    ...(own ? [own] : splitStages(cfg, stages)).map((s) =>
      stageParamSpecs(cfg, s).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0),
    ),
  );
  // By body (frame-kinds.ts): a tensor is at most a boundary tensor, a list of a stage's parameters its
  // gradients, a list of micro-batches (an audit list) at most MAX_AUDIT_LIST of them, a scalar one float64.
  const capOf = (kind: FrameKind): number => {
    const spec = FRAME_KIND_SPECS[kind];
    if (spec.body === 'tensor') return boundary;
    if (spec.body === 'f64 scalar') return 8;
    return 4 * (spec.length === 'stage parameters' ? stageParams : MAX_AUDIT_LIST);
  };
  const byKind = Object.fromEntries(FRAME_KINDS.map((k) => [k, capOf(k)])) as Record<FrameKind, number>;
  return {
    maxHeaderBytes: DEFAULT_MAX_HEADER_BYTES,
    maxPayloadBytes: Math.max(...Object.values(byKind)),
    maxPayloadBytesByKind: byKind,
    maxIds: rows,
  };
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

type HeadRules = { [K in keyof FrameHead]: (v: unknown, head: Partial<FrameHead>) => FrameHead[K] };

function count(field: string): (v: unknown) => number {
  return (v) => {
    if (!isCount(v)) throw new FrameError(`header field ${field} must be a non-negative integer, got ${describe(v)}`);
    return v;
  };
}

/**
 * How each field of the head is read from a parsed header, in order (shape's rule needs the kind): one rule per
 * field of FrameHead, so a field added there does not compile here until it is validated and carried.
 */
const HEAD_RULES: HeadRules = {
  model: (v) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_MODEL_NAME)
      throw new FrameError(
        `header field model must be a non-empty string of at most ${MAX_MODEL_NAME} characters, got ${describe(v)}`,
      );
    return v;
  },
  fromStage: count('fromStage'),
  fromReplica: count('fromReplica'),
  step: count('step'),
  micro: count('micro'),
  kind: (v) => {
    if (typeof v !== 'string' || !(FRAME_KINDS as readonly string[]).includes(v))
      throw new FrameError(`header field kind must be one of ${FRAME_KINDS.join(', ')}, got ${describe(v)}`);
    return v as FrameKind;
  },
  shape: (v, head) => {
    // Both dimensions positive, except an empty list where the kind allows one ([1, 0]).
    const ok = (d: unknown, i: number) => isCount(d) && (d > 0 || (i === 1 && mayBeEmpty(head.kind!)));
    if (!Array.isArray(v) || v.length !== 2 || !v.every(ok))
      throw new FrameError(`header field shape must be two positive integers, got ${describe(v)}`);
    return [v[0], v[1]];
  },
  codec: (v) => {
    if (typeof v !== 'string' || !CODEC_NAME.test(v))
      throw new FrameError(`header field codec must be a codec name, got ${describe(v)}`);
    return v;
  },
};

const HEAD_FIELDS = Object.keys(HEAD_RULES) as (keyof FrameHead)[];

/** Exactly the head fields of a frame or header (what the engine's Frame and the wire header share). */
export function headOf(f: FrameHead): FrameHead {
  return Object.fromEntries(HEAD_FIELDS.map((k) => [k, f[k]])) as unknown as FrameHead;
}

/** Checks a parsed header field by field against the limits; returns it typed or throws FrameError. */
export function validateHeader(h: unknown, limits: FrameLimits): FrameHeader {
  if (typeof h !== 'object' || h === null || Array.isArray(h)) throw new FrameError('header is not a JSON object');
  const o = h as Record<string, unknown>;
  const head: Partial<FrameHead> = {};
  for (const k of HEAD_FIELDS) (head as Record<string, unknown>)[k] = HEAD_RULES[k](o[k], head);
  const { kind } = head as FrameHead;
  const payloadBytes = count('payloadBytes')(o.payloadBytes);
  const idsCount = count('idsCount')(o.idsCount);
  if (o.dtype !== 'f32') throw new FrameError(`header field dtype must be 'f32', got ${describe(o.dtype)}`);
  if (!isCount(o.checksum) || o.checksum > 0xffffffff)
    throw new FrameError(`header field checksum must be an unsigned 32-bit integer, got ${describe(o.checksum)}`);
  const cap = Math.min(limits.maxPayloadBytes, limits.maxPayloadBytesByKind?.[kind] ?? Infinity);
  if (payloadBytes > cap) throw new FrameError(`${kind} payload of ${payloadBytes} bytes exceeds the limit of ${cap}`);
  const maxIds = limits.maxIds ?? Math.floor(limits.maxPayloadBytes / 4);
  if (idsCount > maxIds) throw new FrameError(`${idsCount} token ids exceed the limit of ${maxIds}`);
  return { ...(head as FrameHead), dtype: 'f32', payloadBytes, idsCount, checksum: o.checksum };
}

function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function idsBytes(ids: Int32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength);
  const out = new Uint8Array(ids.byteLength);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < ids.length; i++) dv.setInt32(i * 4, ids[i], true);
  return out;
}

/**
 * Serialises a frame. The header is validated with no size limits except the header's own, so a frame this
 * function accepts is refused by a receiver only for exceeding its limits or failing its assignment checks.
 */
export function encodeFrame(frame: Frame): Uint8Array {
  const ids = frame.ids && frame.ids.length > 0 ? idsBytes(frame.ids) : new Uint8Array(0);
  const header = {
    ...headOf(frame),
    dtype: 'f32',
    payloadBytes: frame.payload.byteLength,
    idsCount: ids.byteLength / 4,
    checksum: crc32(ids, crc32(frame.payload)),
  };
  validateHeader(header, {
    maxHeaderBytes: DEFAULT_MAX_HEADER_BYTES,
    maxPayloadBytes: Number.MAX_SAFE_INTEGER,
    maxIds: Number.MAX_SAFE_INTEGER,
  });
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(4 + json.length + frame.payload.byteLength + ids.byteLength);
  new DataView(out.buffer).setUint32(0, json.length, false);
  out.set(json, 4);
  out.set(frame.payload, 4 + json.length);
  out.set(ids, 4 + json.length + frame.payload.byteLength);
  return out;
}

/**
 * Streaming decoder: push chunks as they arrive (split anywhere, several frames per chunk), get whole frames
 * back. Limits are enforced as soon as the header is read, before a byte of the body is buffered: the body's
 * buffers are allocated only for a header that passed. After a FrameError the decoder refuses further input
 * (the stream's framing is lost; the caller resets the stream).
 */
export class FrameDecoder {
  private readonly limits: FrameLimits;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });
  /** Bytes of the length prefix and header, gathered until complete. */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private headerLength = -1;
  private header: FrameHeader | undefined;
  private payload = new Uint8Array(0);
  private ids = new Uint8Array(0);
  private bodyFilled = 0;
  private failed: FrameError | undefined;

  constructor(limits: FrameLimits) {
    this.limits = limits;
  }

  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    try {
      return this.consume(chunk);
    } catch (e) {
      this.failed = e instanceof FrameError ? e : new FrameError(`undecodable frame: ${(e as Error).message}`);
      throw this.failed;
    }
  }

  /** True between frames: a stream that ends here ended cleanly. */
  get idle(): boolean {
    return this.pendingBytes === 0 && this.headerLength < 0 && this.header === undefined;
  }

  private consume(chunk: Uint8Array): Frame[] {
    const out: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.header) {
        at += this.fillBody(chunk.subarray(at));
        if (this.bodyFilled === this.payload.length + this.ids.length) out.push(this.finishFrame());
        continue;
      }
      const want = this.headerLength < 0 ? 4 : this.headerLength;
      const take = Math.min(want - this.pendingBytes, chunk.length - at);
      this.pending.push(chunk.subarray(at, at + take));
      this.pendingBytes += take;
      at += take;
      if (this.pendingBytes < want) break;
      const bytes = this.takePending();
      if (this.headerLength < 0) this.readLength(bytes);
      else this.readHeader(bytes);
      // A frame with an empty body is complete as soon as its header is.
      if (this.header && this.payload.length + this.ids.length === 0) out.push(this.finishFrame());
    }
    return out;
  }

  private takePending(): Uint8Array {
    const bytes = this.pending.length === 1 ? this.pending[0] : new Uint8Array(this.pendingBytes);
    if (this.pending.length > 1) {
      let o = 0;
      for (const p of this.pending) {
        bytes.set(p, o);
        o += p.length;
      }
    }
    this.pending = [];
    this.pendingBytes = 0;
    return bytes;
  }

  private readLength(bytes: Uint8Array): void {
    const n = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, false);
    if (n === 0) throw new FrameError('empty header');
    if (n > this.limits.maxHeaderBytes)
      throw new FrameError(`header of ${n} bytes exceeds the limit of ${this.limits.maxHeaderBytes}`);
    this.headerLength = n;
  }

  private readHeader(bytes: Uint8Array): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(this.utf8.decode(bytes));
    } catch {
      throw new FrameError('header is not UTF-8 JSON');
    }
    const h = validateHeader(parsed, this.limits);
    this.headerLength = -1;
    this.header = h;
    this.payload = new Uint8Array(h.payloadBytes);
    this.ids = new Uint8Array(h.idsCount * 4);
    this.bodyFilled = 0;
  }

  /** Copies as much of `bytes` as the body still needs; returns how many bytes it took. */
  private fillBody(bytes: Uint8Array): number {
    let taken = 0;
    const p = this.payload.length;
    if (this.bodyFilled < p) {
      const n = Math.min(p - this.bodyFilled, bytes.length);
      this.payload.set(bytes.subarray(0, n), this.bodyFilled);
      this.bodyFilled += n;
      taken = n;
    }
    const n = Math.min(p + this.ids.length - this.bodyFilled, bytes.length - taken);
    if (n > 0) {
      this.ids.set(bytes.subarray(taken, taken + n), this.bodyFilled - p);
      this.bodyFilled += n;
      taken += n;
    }
    return taken;
  }

  private finishFrame(): Frame {
    const h = this.header!;
    const { payload, ids } = this;
    this.header = undefined;
    this.payload = new Uint8Array(0);
    this.ids = new Uint8Array(0);
    this.bodyFilled = 0;
    const sum = crc32(ids, crc32(payload));
    if (sum !== h.checksum)
      throw new FrameError(`checksum mismatch (header ${h.checksum}, body ${sum}): corrupted ${h.kind} frame`);
    const frame: Frame = { ...headOf(h), payload };
    if (h.idsCount > 0) frame.ids = decodeIds(ids);
    return frame;
  }
}

function decodeIds(bytes: Uint8Array): Int32Array {
  if (LITTLE_ENDIAN) return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const out = new Int32Array(bytes.byteLength / 4);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = dv.getInt32(i * 4, true);
  return out;
}
