import { ArgumentError, DTypeError, ShapeError } from './errors.ts';

export type DType = 'f32' | 'i32' | 'u32';

/** A dense row-major tensor living in a GPU storage buffer (4-byte elements). */
export interface Tensor {
  readonly buffer: GPUBuffer;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Number of elements (product of shape). */
  readonly size: number;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function assertShape(shape: readonly number[], what = 'tensor'): void {
  if (shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new ShapeError(`${what}: shape [${shape.join(', ')}] must be a non-empty list of positive integers`);
  }
}

export function expectDType(t: Tensor, dtype: DType, what: string): void {
  if (t.dtype !== dtype) throw new DTypeError(`${what} must be ${dtype}, got ${t.dtype}`);
}

/** Checks t has exactly `shape`; entries of -1 match any size. Returns the actual shape. */
export function expectShape(t: Tensor, shape: readonly number[], what: string): readonly number[] {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d === -1 || d === t.shape[i]);
  if (!ok) {
    const want = shape.map((d) => (d === -1 ? '*' : String(d))).join(', ');
    throw new ShapeError(`${what} must have shape [${want}], got [${t.shape.join(', ')}]`);
  }
  return t.shape;
}

export function expectRank(t: Tensor, rank: number, what: string): readonly number[] {
  if (t.shape.length !== rank) throw new ShapeError(`${what} must be rank ${rank}, got shape [${t.shape.join(', ')}]`);
  return t.shape;
}

export function typedArrayFor(dtype: DType, data: ArrayBuffer): Float32Array | Int32Array | Uint32Array {
  return dtype === 'f32' ? new Float32Array(data) : dtype === 'i32' ? new Int32Array(data) : new Uint32Array(data);
}

export function expectFinite(value: number, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new ArgumentError(`${what} must be a finite number, got ${value}`);
}

/** Throws unless all the named tensors use different buffers. */
export function expectDistinct(what: string, ...named: Array<[string, Tensor | undefined]>): void {
  for (let i = 0; i < named.length; i++) {
    for (let j = i + 1; j < named.length; j++) {
      const [ni, ti] = named[i];
      const [nj, tj] = named[j];
      if (ti && tj && ti.buffer === tj.buffer)
        throw new ArgumentError(`${what}: ${ni} and ${nj} must be distinct tensors`);
    }
  }
}
