/**
 * Reading and writing frame bodies (the FrameBody of each kind, frame-kinds.ts) on the host. Every frame the
 * stage runner receives goes through one of the decoders here, so training and audits read tensors the same
 * way: shape, codec and length checked, then every value checked finite, before anything reaches the GPU.
 */
import type { Codec } from '../compress/codec.ts';
import { TesseraError } from '../errors.ts';
import { FRAME_KIND_SPECS, type FrameKind } from './frame-kinds.ts';
import { FrameError, type Frame } from './transport.ts';

/** A NaN or Inf arrived at a stage boundary: the step is refused, nothing reached the GPU. */
export class NonFiniteTensorError extends TesseraError {
  constructor(what: string, index: number, value: number) {
    super('non-finite-tensor', `${what}: element ${index} is ${value}; step refused`);
  }
}

/** Throws NonFiniteTensorError at the first NaN/Inf of `a`. */
export function requireFinite(a: Float32Array, what: string): void {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) throw new NonFiniteTensorError(what, i, a[i]);
}

/** What a receiver knows of a boundary tensor without reading the frame. */
export interface TensorExpectation {
  rows: number;
  width: number;
  /** The boundary's codec (undefined: raw float32, 'none'). */
  codec: Codec | undefined;
  /** The micro-batch's token ids (codecs rebuild from them). */
  ids: Int32Array;
  /** Names the receiver in errors, e.g. "stage 2". */
  where: string;
}

/** The host values of a tensor frame (act, grad, audit), decoded by the boundary's codec. */
export function decodeTensor(f: Frame, e: TensorExpectation): Float32Array {
  const { rows, width, codec, where } = e;
  const travels = FRAME_KIND_SPECS[f.kind].travels;
  if (!travels) throw new FrameError(`${where}: a ${f.kind} frame carries no tensor`);
  if (f.shape[0] !== rows || f.shape[1] !== width)
    throw new FrameError(
      `${where}: ${f.kind} frame shape [${f.shape}] for micro-batch ${f.micro}, expected [${rows}, ${width}]`,
    );
  const name = codec?.name ?? 'none';
  if (f.codec !== name) throw new FrameError(`${where}: ${f.kind} frame codec ${f.codec}, expected ${name}`);
  if (!codec && f.payload.byteLength !== 4 * rows * width)
    throw new FrameError(`${where}: ${f.kind} payload of ${f.payload.byteLength} bytes, expected ${4 * rows * width}`);
  const host = codec
    ? codec.decode(f.payload, [rows, width], { ids: e.ids, kind: travels })
    : new Float32Array(f.payload.slice().buffer, 0, rows * width);
  if (host.length !== rows * width)
    throw new FrameError(`${where}: ${f.kind} payload holds ${host.length} values, expected ${rows * width}`);
  requireFinite(host, `${where} received ${f.kind}, micro-batch ${f.micro}`);
  return host;
}

/** The bytes of a tensor frame's payload: `host` encoded by the boundary's codec, or its raw float32. */
export function encodeTensor(host: Float32Array, kind: FrameKind, e: Omit<TensorExpectation, 'where'>): Uint8Array {
  const travels = FRAME_KIND_SPECS[kind].travels;
  if (!travels) throw new FrameError(`a ${kind} frame carries no tensor`);
  return e.codec
    ? e.codec.encode(host, [e.rows, e.width], { ids: e.ids, kind: travels })
    : new Uint8Array(host.buffer, host.byteOffset, host.byteLength);
}

/** The body of an 'f32 list' frame (gradsync, auditlist). */
export function listBody(values: ArrayLike<number>): Pick<Frame, 'shape' | 'codec' | 'payload'> {
  const f32 = Float32Array.from(values);
  return { shape: [1, f32.length], codec: 'none', payload: new Uint8Array(f32.buffer) };
}

/** The values of an 'f32 list' frame, `expected` of them when given. */
export function decodeList(f: Frame, where: string, expected?: number): Float32Array {
  const n = f.shape[1];
  if (FRAME_KIND_SPECS[f.kind].body !== 'f32 list' || f.shape[0] !== 1 || f.codec !== 'none')
    throw new FrameError(`${where}: ${f.kind} frame is not a float32 list (shape [${f.shape}], codec ${f.codec})`);
  if (f.payload.byteLength !== 4 * n)
    throw new FrameError(`${where}: ${f.kind} frame of ${n} values holds ${f.payload.byteLength} bytes`);
  if (expected !== undefined && n !== expected)
    throw new FrameError(`${where}: ${f.kind} frame has ${n} values, expected ${expected}`);
  return new Float32Array(f.payload.slice().buffer);
}

/** The body of an 'f64 scalar' frame (norm). */
export function scalarBody(x: number): Pick<Frame, 'shape' | 'codec' | 'payload'> {
  return { shape: [1, 1], codec: 'f64', payload: new Uint8Array(new Float64Array([x]).buffer) };
}

/** The value of an 'f64 scalar' frame. */
export function decodeScalar(f: Frame, where: string): number {
  if (f.payload.byteLength !== 8)
    throw new FrameError(`${where}: ${f.kind} frame holds ${f.payload.byteLength} bytes, expected 8`);
  return new Float64Array(f.payload.slice().buffer)[0];
}
