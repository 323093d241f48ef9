/**
 * The safetensors format (Hugging Face): u64 little-endian header length, a JSON header
 * { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__: { … } }, then the raw little-endian
 * tensor bytes. We add a SHA-256 of the data section to the metadata (`sha256`) so a stage handed to another
 * peer is checked on arrival; `parseSafetensors` verifies it when present.
 */
import { TesseraError } from '../errors.ts';

export type SafeDType = 'F32' | 'F64' | 'I32' | 'U32';
export type SafeArray = Float32Array | Float64Array | Int32Array | Uint32Array;

export interface NamedTensor {
  shape: number[];
  data: SafeArray;
}

export class SafetensorsError extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('safetensors', message, options);
  }
}

const DTYPE_OF = (a: SafeArray): SafeDType =>
  a instanceof Float32Array ? 'F32' : a instanceof Float64Array ? 'F64' : a instanceof Int32Array ? 'I32' : 'U32';
const BYTES: Record<SafeDType, number> = { F32: 4, F64: 8, I32: 4, U32: 4 };
const MAX_HEADER = 100 * 1024 * 1024; // the reference implementation's limit

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Serialises tensors (in the given order) with metadata; adds `sha256` of the data section. */
export async function serializeSafetensors(
  tensors: Map<string, NamedTensor> | Record<string, NamedTensor>,
  metadata: Record<string, string> = {},
): Promise<Uint8Array> {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [name, t] of entries) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length)
      throw new SafetensorsError(`${name}: shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    const dtype = DTYPE_OF(t.data);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const [, t] of entries) {
    data.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  header.__metadata__ = { ...metadata, sha256: await sha256Hex(data) };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8); // align the data section to 8 bytes
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}

export interface ParsedSafetensors {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

/** Parses and validates a safetensors file; verifies the `sha256` metadata when present. */
export async function parseSafetensors(bytes: Uint8Array): Promise<ParsedSafetensors> {
  if (bytes.length < 8) throw new SafetensorsError(`file too short (${bytes.length} bytes)`);
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER || 8 + headerLen > bytes.length)
    throw new SafetensorsError(`header length ${headerLen} is invalid for a ${bytes.length}-byte file`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new SafetensorsError(`header is not JSON: ${(e as Error).message}`);
  }
  const data = bytes.subarray(8 + headerLen);
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  if (metadata.sha256 !== undefined) {
    const actual = await sha256Hex(data);
    if (actual !== metadata.sha256)
      throw new SafetensorsError(`content hash mismatch: header says ${metadata.sha256}, data hashes to ${actual}`);
  }
  const tensors = new Map<string, NamedTensor>();
  let covered = 0;
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = raw as { dtype?: string; shape?: unknown; data_offsets?: unknown };
    const dtype = info.dtype as SafeDType;
    if (!(dtype in BYTES)) throw new SafetensorsError(`${name}: unsupported dtype ${info.dtype}`);
    const shape = info.shape;
    const offs = info.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      throw new SafetensorsError(`${name}: bad shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0))
      throw new SafetensorsError(`${name}: bad data_offsets`);
    const [begin, end] = offs as [number, number];
    const n = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end < begin || end > data.length || end - begin !== n * BYTES[dtype]) {
      throw new SafetensorsError(
        `${name}: data_offsets [${begin}, ${end}] do not match shape [${shape}] of ${dtype} within ` +
          `${data.length} data bytes`,
      );
    }
    covered += end - begin;
    const copy = data.slice(begin, end).buffer; // aligned copy for the typed array
    const arr =
      dtype === 'F32'
        ? new Float32Array(copy)
        : dtype === 'F64'
          ? new Float64Array(copy)
          : dtype === 'I32'
            ? new Int32Array(copy)
            : new Uint32Array(copy);
    tensors.set(name, { shape: shape as number[], data: arr });
  }
  if (covered !== data.length) throw new SafetensorsError(`tensors cover ${covered} of ${data.length} data bytes`);
  return { tensors, metadata };
}
