/**
 * A minimal protobuf encoder for ONNX ModelProto, written by hand so a stage can be exported without ONNX
 * tooling or another npm dependency. Only what a stage graph needs: nodes with int/float/ints/tensor
 * attributes, initializers as raw little-endian data, typed inputs/outputs with fixed or symbolic dims.
 * Field numbers are those of onnx/onnx.proto (proto2: repeated scalars are written unpacked, which every
 * parser accepts).
 *
 * Messages are built as trees of byte chunks with known lengths and flattened once at the end, so a model
 * with megabytes of weights is copied exactly once.
 */

/** TensorProto.DataType values used here. */
export const ONNX_DTYPE = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9 } as const;
export type OnnxDType = (typeof ONNX_DTYPE)[keyof typeof ONNX_DTYPE];

/** A tensor dimension: a size, or a symbolic name (dim_param) for a size chosen at run time. */
export type OnnxDim = number | string;

export interface OnnxTensor {
  name: string;
  dims: readonly number[];
  /** Stored as raw_data; the element type follows the array (Float32 → FLOAT, Int32 → INT32, BigInt64 → INT64). */
  data: Float32Array | Int32Array | BigInt64Array;
}

export type OnnxAttribute =
  | { name: string; kind: 'int'; value: number }
  | { name: string; kind: 'float'; value: number }
  | { name: string; kind: 'ints'; value: readonly number[] }
  | { name: string; kind: 'tensor'; value: OnnxTensor };

export interface OnnxNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  attributes?: readonly OnnxAttribute[];
  /** Operator domain; '' (the default) is ai.onnx. */
  domain?: string;
}

export interface OnnxValueInfo {
  name: string;
  dtype: OnnxDType;
  dims: readonly OnnxDim[];
}

export interface OnnxGraph {
  name: string;
  nodes: readonly OnnxNode[];
  initializers: readonly OnnxTensor[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  graph: OnnxGraph;
  /** ai.onnx opset version (e.g. 17). */
  opset: number;
  /** Extra opset imports, e.g. { domain: 'com.microsoft', version: 1 }. */
  extraOpsets?: ReadonlyArray<{ domain: string; version: number }>;
  /** IR version; 8 goes with opsets up to 18. */
  irVersion?: number;
  producer?: string;
  docString?: string;
}

// ---- wire format --------------------------------------------------------------------------------------

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/** A message under construction: chunks whose concatenation is its encoding. */
class Message {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  push(c: Uint8Array): void {
    this.chunks.push(c);
    this.length += c.length;
  }
}

/** Base-128 varint of an unsigned 64-bit value; negative int64s become their 10-byte two's complement. */
export function encodeVarint(value: number | bigint): Uint8Array {
  if (typeof value === 'number' && !Number.isSafeInteger(value))
    throw new RangeError(`varint: ${value} is not a safe integer`);
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return new Uint8Array(out);
}

function tag(field: number, wire: number): Uint8Array {
  return encodeVarint(field * 8 + wire);
}

function varintField(m: Message, field: number, value: number | bigint): void {
  m.push(tag(field, WIRE_VARINT));
  m.push(encodeVarint(value));
}

function bytesField(m: Message, field: number, bytes: Uint8Array): void {
  m.push(tag(field, WIRE_LEN));
  m.push(encodeVarint(bytes.length));
  m.push(bytes);
}

const utf8 = new TextEncoder();
function stringField(m: Message, field: number, s: string): void {
  bytesField(m, field, utf8.encode(s));
}

function messageField(m: Message, field: number, sub: Message): void {
  m.push(tag(field, WIRE_LEN));
  m.push(encodeVarint(sub.length));
  for (const c of sub.chunks) m.push(c);
}

function floatField(m: Message, field: number, value: number): void {
  m.push(tag(field, WIRE_FIXED32));
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, value, true);
  m.push(b);
}

function flatten(m: Message): Uint8Array {
  const out = new Uint8Array(m.length);
  let o = 0;
  for (const c of m.chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

// ---- ONNX messages ------------------------------------------------------------------------------------

function dtypeOf(data: OnnxTensor['data']): OnnxDType {
  if (data instanceof Float32Array) return ONNX_DTYPE.FLOAT;
  if (data instanceof Int32Array) return ONNX_DTYPE.INT32;
  return ONNX_DTYPE.INT64;
}

/** Raw little-endian bytes of a typed array without copying (every JS engine we target is little-endian). */
function rawBytes(data: OnnxTensor['data']): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function tensorProto(t: OnnxTensor): Message {
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (n !== t.data.length) throw new RangeError(`onnx tensor ${t.name}: ${t.data.length} values for dims [${t.dims}]`);
  const m = new Message();
  for (const d of t.dims) varintField(m, 1, d); // dims
  varintField(m, 2, dtypeOf(t.data)); // data_type
  stringField(m, 8, t.name); // name
  bytesField(m, 9, rawBytes(t.data)); // raw_data
  return m;
}

const ATTR_TYPE = { float: 1, int: 2, tensor: 4, ints: 7 } as const;

function attributeProto(a: OnnxAttribute): Message {
  const m = new Message();
  stringField(m, 1, a.name);
  switch (a.kind) {
    case 'float':
      floatField(m, 2, a.value);
      break; // f
    case 'int':
      varintField(m, 3, a.value);
      break; // i
    case 'tensor':
      messageField(m, 5, tensorProto(a.value));
      break; // t
    case 'ints':
      for (const v of a.value) varintField(m, 8, v);
      break; // ints
  }
  varintField(m, 20, ATTR_TYPE[a.kind]); // type
  return m;
}

function nodeProto(n: OnnxNode): Message {
  const m = new Message();
  for (const i of n.inputs) stringField(m, 1, i);
  for (const o of n.outputs) stringField(m, 2, o);
  if (n.name) stringField(m, 3, n.name);
  stringField(m, 4, n.op);
  for (const a of n.attributes ?? []) messageField(m, 5, attributeProto(a));
  if (n.domain) stringField(m, 7, n.domain);
  return m;
}

/** ValueInfoProto{name, type: TypeProto{tensor_type{elem_type, shape{dim*}}}}. */
function valueInfoProto(v: OnnxValueInfo): Message {
  const shape = new Message();
  for (const d of v.dims) {
    const dim = new Message();
    if (typeof d === 'number')
      varintField(dim, 1, d); // dim_value
    else stringField(dim, 2, d); // dim_param
    messageField(shape, 1, dim);
  }
  const tensorType = new Message();
  varintField(tensorType, 1, v.dtype);
  messageField(tensorType, 2, shape);
  const type = new Message();
  messageField(type, 1, tensorType);
  const m = new Message();
  stringField(m, 1, v.name);
  messageField(m, 2, type);
  return m;
}

function graphProto(g: OnnxGraph): Message {
  const m = new Message();
  for (const n of g.nodes) messageField(m, 1, nodeProto(n));
  stringField(m, 2, g.name);
  for (const t of g.initializers) messageField(m, 5, tensorProto(t));
  for (const v of g.inputs) messageField(m, 11, valueInfoProto(v));
  for (const v of g.outputs) messageField(m, 12, valueInfoProto(v));
  return m;
}

function opsetProto(domain: string, version: number): Message {
  const m = new Message();
  if (domain) stringField(m, 1, domain);
  varintField(m, 2, version);
  return m;
}

/** Serialized ModelProto, ready for ort.InferenceSession.create(bytes). */
export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  const m = new Message();
  varintField(m, 1, model.irVersion ?? 8); // ir_version
  stringField(m, 2, model.producer ?? 'tessera'); // producer_name
  messageField(m, 7, graphProto(model.graph)); // graph
  messageField(m, 8, opsetProto('', model.opset)); // opset_import
  for (const o of model.extraOpsets ?? []) messageField(m, 8, opsetProto(o.domain, o.version));
  if (model.docString) stringField(m, 6, model.docString); // doc_string
  return flatten(m);
}
