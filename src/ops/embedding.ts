import shader from '../../shaders/embedding.wgsl?raw';
import {
  expectDType,
  expectRank,
  expectShape,
  ShapeError,
  TokenRangeError,
  type Gpu,
  type Param,
  type Tensor,
} from '../gpu/index.ts';
import { elementwiseWorkgroup, grid1d } from './grid.ts';

export interface EmbeddingDims {
  batch: number;
  seq: number;
}

function checkDims(dims: EmbeddingDims, what: string): number {
  const { batch, seq } = dims;
  if (!Number.isInteger(batch) || batch <= 0 || !Number.isInteger(seq) || seq <= 0) {
    throw new ShapeError(`${what}: batch and seq must be positive integers, got ${batch}×${seq}`);
  }
  return batch * seq;
}

/**
 * x = wte[ids] + wpe[position] → [B·T, C], position = index mod T. ids [B·T] (or [B, T]) i32 on the GPU.
 * Ids are not checked here (that would need a read-back); an id outside [0, V) gives a NaN row. The data
 * loader holds the ids on the host and checks them (embeddingBackward does).
 */
export function embedding(gpu: Gpu, ids: Tensor, wte: Tensor, wpe: Tensor, dims: EmbeddingDims): Tensor {
  const n = checkDims(dims, 'embedding');
  expectDType(ids, 'i32', 'embedding ids');
  expectDType(wte, 'f32', 'embedding wte');
  expectDType(wpe, 'f32', 'embedding wpe');
  if (ids.size !== n || ids.shape.length > 2) {
    throw new ShapeError(
      `embedding ids must have shape [${n}] or [${dims.batch}, ${dims.seq}], got [${ids.shape.join(', ')}]`,
    );
  }
  const [v, c] = expectRank(wte, 2, 'embedding wte');
  const [tmax] = expectShape(wpe, [-1, c], 'embedding wpe');
  if (dims.seq > tmax) throw new ShapeError(`embedding: seq ${dims.seq} exceeds wpe's ${tmax} positions`);
  const x = gpu.empty([n, c], 'f32', 'embedding.x');
  const WG = elementwiseWorkgroup(gpu);
  gpu.dispatch({
    shader,
    entry: 'forward',
    constants: { WG },
    label: 'embedding.forward',
    params: params(n, dims, c, v),
    buffers: { 1: ids, 2: wte, 3: wpe, 4: x },
    workgroups: grid1d(gpu, n * c, WG),
  });
  return x;
}

/**
 * Positions grouped by token id (CSR): positions of token v are positions[offsets[v] .. offsets[v+1]),
 * ascending. Built on the host because the data loader has the ids there anyway; it gives the wte gradient
 * a fixed summation order without atomics.
 */
export function tokenPositionsCsr(ids: Int32Array, vocab: number): { offsets: Uint32Array; positions: Uint32Array } {
  const offsets = new Uint32Array(vocab + 1);
  for (let p = 0; p < ids.length; p++) {
    const id = ids[p];
    if (!(id >= 0 && id < vocab)) throw new TokenRangeError(`token id ${id} at position ${p} is outside [0, ${vocab})`);
    offsets[id + 1]++;
  }
  for (let v = 0; v < vocab; v++) offsets[v + 1] += offsets[v];
  const cursor = offsets.slice(0, vocab);
  const positions = new Uint32Array(ids.length);
  for (let p = 0; p < ids.length; p++) positions[cursor[ids[p]]++] = p;
  return { offsets, positions };
}

/**
 * dwte [V, C] (Σ of dx over each token's positions) and dwpe [seq, C] (Σ of dx over the batch).
 * `ids` is the host copy of the forward's ids (checked against [0, vocab): TokenRangeError).
 * dwpe covers positions 0..seq−1 only; the caller adds it into rows [0, seq) of wpe's gradient.
 */
export function embeddingBackward(
  gpu: Gpu,
  dx: Tensor,
  ids: Int32Array,
  vocab: number,
  dims: EmbeddingDims,
): { dwte: Tensor; dwpe: Tensor } {
  const n = checkDims(dims, 'embeddingBackward');
  expectDType(dx, 'f32', 'embeddingBackward dx');
  const [, c] = expectShape(dx, [n, -1], 'embeddingBackward dx');
  if (!(ids instanceof Int32Array)) throw new ShapeError('embeddingBackward: ids must be an Int32Array');
  if (ids.length !== n)
    throw new ShapeError(`embeddingBackward: ${ids.length} ids for batch ${dims.batch} × seq ${dims.seq}`);
  if (!Number.isInteger(vocab) || vocab <= 0)
    throw new ShapeError(`embeddingBackward: vocab must be a positive integer, got ${vocab}`);
  const { offsets, positions } = tokenPositionsCsr(ids, vocab);
  const off = gpu.upload(offsets, [vocab + 1], 'u32', 'embedding.offsets');
  const pos = gpu.upload(positions, [n], 'u32', 'embedding.positions');
  const par = params(n, dims, c, vocab);
  const WG = elementwiseWorkgroup(gpu);
  const dwte = gpu.empty([vocab, c], 'f32', 'embedding.dwte');
  gpu.dispatch({
    shader,
    entry: 'backward_wte',
    constants: { WG },
    label: 'embedding.backward_wte',
    params: par,
    buffers: { 4: dwte, 5: dx, 6: off, 7: pos },
    workgroups: grid1d(gpu, vocab * c, WG),
  });
  const dwpe = gpu.empty([dims.seq, c], 'f32', 'embedding.dwpe');
  gpu.dispatch({
    shader,
    entry: 'backward_wpe',
    constants: { WG },
    label: 'embedding.backward_wpe',
    params: par,
    buffers: { 4: dwpe, 5: dx },
    workgroups: grid1d(gpu, dims.seq * c, WG),
  });
  gpu.release(off, pos);
  return { dwte, dwpe };
}

function params(n: number, dims: EmbeddingDims, c: number, v: number): Param[] {
  return [
    ['u32', n],
    ['u32', dims.seq],
    ['u32', c],
    ['u32', v],
    ['u32', dims.batch],
  ];
}
