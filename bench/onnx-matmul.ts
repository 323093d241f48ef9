/**
 * A one-node ONNX model (MatMul, or Gemm when an operand is transposed) written directly in protobuf wire
 * format, so onnxruntime-web can run exactly the product our kernel computes without any model files or
 * ONNX tooling. Field numbers are those of onnx/onnx.proto (IR version 8, default opset 13).
 */
import { encodeVarint } from '../src/infer/onnx-proto.ts';

const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR_INT = 2; // AttributeProto.AttributeType.INT

type Field = Uint8Array;

const varint = (n: number): number[] => [...encodeVarint(n)];

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Varint field (wire type 0). */
function int(field: number, value: number): Field {
  return new Uint8Array([...varint((field << 3) | 0), ...varint(value)]);
}

/** Length-delimited field (wire type 2): a nested message or bytes. */
function msg(field: number, ...body: Field[]): Field {
  const payload = concat(body);
  return concat([new Uint8Array([...varint((field << 3) | 2), ...varint(payload.length)]), payload]);
}

function str(field: number, s: string): Field {
  return msg(field, new TextEncoder().encode(s));
}

/** ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type: FLOAT, shape: {dim: [...]}}}}. */
function tensorInfo(field: number, name: string, dims: readonly number[]): Field {
  const shape = msg(2, ...dims.map((d) => msg(1, int(1, d))));
  return msg(field, str(1, name), msg(2, msg(1, int(1, FLOAT), shape)));
}

/** AttributeProto{name, i, type: INT}. */
function intAttr(name: string, value: number): Field {
  return msg(5, str(1, name), int(3, value), int(20, ATTR_INT));
}

export interface MatmulModelSpec {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
}

/** Stored shapes of the operands: A is [M,K] or, transposed, [K,M]; B is [K,N] or [N,K]. */
export function operandShapes(s: MatmulModelSpec): { a: [number, number]; b: [number, number] } {
  return { a: s.transA ? [s.K, s.M] : [s.M, s.K], b: s.transB ? [s.N, s.K] : [s.K, s.N] };
}

/**
 * Serialized ModelProto computing Y[M,N] = op(A)·op(B) from graph inputs "A" and "B" (both inputs, not
 * initializers, so the runtime cannot pre-pack B: the same work as our kernel).
 */
export function buildMatmulModel(s: MatmulModelSpec): Uint8Array {
  const { a, b } = operandShapes(s);
  const transposed = s.transA || s.transB;
  const node = msg(
    1,
    str(1, 'A'),
    str(1, 'B'),
    str(2, 'Y'),
    str(3, transposed ? 'gemm' : 'matmul'),
    str(4, transposed ? 'Gemm' : 'MatMul'),
    ...(transposed ? [intAttr('transA', s.transA ? 1 : 0), intAttr('transB', s.transB ? 1 : 0)] : []),
  );
  const graph = msg(
    7,
    node,
    str(2, 'bench'),
    tensorInfo(11, 'A', a),
    tensorInfo(11, 'B', b),
    tensorInfo(12, 'Y', [s.M, s.N]),
  );
  return concat([
    int(1, 8), // ir_version
    str(2, 'tessera-bench'),
    graph,
    msg(8, str(1, ''), int(2, 13)), // opset_import {domain: "", version: 13}
  ]);
}
