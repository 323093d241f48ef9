import shader from '../../shaders/attention-decode.wgsl?raw';
import { expectDType, expectRank, ShapeError, type Gpu, type Param, type Tensor } from '../gpu/index.ts';
import { MAX_HEAD_DIM } from './attention.ts';
import { grid1d } from './grid.ts';

/**
 * Causal attention of t new rows over a KV cache (see shaders/attention-decode.wgsl). The cache of one layer
 * is a [capacity, 2C] tensor whose row j is k_j | v_j, i.e. the k and v column parts of the qkv row of
 * position j; kvAppend writes the new rows there, attentionDecode then attends over positions [0, past + t).
 */
export interface DecodeDims {
  heads: number;
  /** Positions already in the cache before the t new rows of qkv. */
  past: number;
}

export interface DecodePlan {
  /** Invocations per workgroup. */
  workgroup: number;
  /** Splits of each row's keys (flash-decoding); 1 when the rows alone fill the device. */
  splits: number;
  /** Keys per split. */
  keysPerSplit: number;
}

export interface DecodeOptions {
  /** Override the plan's keys per split (tests force several splits on small shapes). */
  keysPerSplit?: number;
}

/**
 * Invocations the partial pass aims for: enough to fill a GPU's SMs when t·H alone would not (t = 1), and on
 * CPU drivers about one per SIMD lane of a few cores, where more splits only add combine work. Heuristics:
 * measured on lavapipe only so far (t = 1, H 4, D 32: 0.39 ms at 256 keys, 0.98 ms at 1024), not on a GPU.
 */
const TARGET_GPU = 8192;
const TARGET_SOFTWARE = 64;
/** Shortest split: each split costs a scratch row of D + 2 floats and its share of the combine pass. */
const MIN_KEYS_PER_SPLIT = 32;

/** Picks the workgroup size and the key splits from the device limits and the shape, at run time. */
export function chooseDecodePlan(
  gpu: Gpu,
  t: number,
  dims: DecodeDims & { headDim: number },
  opts: DecodeOptions = {},
): DecodePlan {
  const lim = gpu.limits;
  const soft = gpu.adapter.isSoftware;
  const workgroup = Math.min(soft ? 16 : 64, lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  const keys = dims.past + t;
  const rows = dims.heads * t;
  let keysPerSplit: number;
  if (opts.keysPerSplit !== undefined) {
    if (!Number.isInteger(opts.keysPerSplit) || opts.keysPerSplit < 1)
      throw new ShapeError(`attentionDecode: keysPerSplit must be a positive integer, got ${opts.keysPerSplit}`);
    keysPerSplit = opts.keysPerSplit;
  } else {
    const want = Math.ceil((soft ? TARGET_SOFTWARE : TARGET_GPU) / rows);
    keysPerSplit = Math.ceil(keys / Math.max(1, Math.min(want, Math.floor(keys / MIN_KEYS_PER_SPLIT))));
  }
  // The partials [rows·splits, D] must fit one storage binding.
  const maxSplits = Math.max(
    1,
    Math.floor(Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize) / (4 * rows * dims.headDim)),
  );
  keysPerSplit = Math.max(keysPerSplit, Math.ceil(keys / maxSplits));
  const splits = Math.ceil(keys / keysPerSplit);
  return { workgroup, splits, keysPerSplit };
}

interface Resolved {
  t: number;
  H: number;
  C: number;
  D: number;
  past: number;
}

function resolve(qkv: Tensor, kv: Tensor, dims: DecodeDims, what: string): Resolved {
  const { heads: H, past } = dims;
  if (!Number.isInteger(H) || H < 1) throw new ShapeError(`${what}: heads must be a positive integer, got ${H}`);
  if (!Number.isInteger(past) || past < 0)
    throw new ShapeError(`${what}: past must be a non-negative integer, got ${past}`);
  expectDType(qkv, 'f32', `${what} qkv`);
  expectDType(kv, 'f32', `${what} kv`);
  const [t, cols] = expectRank(qkv, 2, `${what} qkv`);
  if (cols % (3 * H) !== 0)
    throw new ShapeError(`${what}: qkv has ${cols} columns, not divisible by 3·heads = ${3 * H}`);
  const C = cols / 3;
  const D = C / H;
  if (D > MAX_HEAD_DIM) throw new ShapeError(`${what}: head dim ${D} exceeds the kernels' maximum of ${MAX_HEAD_DIM}`);
  const [cap, kvCols] = expectRank(kv, 2, `${what} kv`);
  if (kvCols !== 2 * C)
    throw new ShapeError(`${what}: kv must have 2·C = ${2 * C} columns (k | v), got [${kv.shape.join(', ')}]`);
  if (past + t > cap) throw new ShapeError(`${what}: past ${past} + ${t} new rows exceed the cache's ${cap} rows`);
  return { t, H, C, D, past };
}

/** Writes the k | v parts of qkv [t, 3C] into rows past .. past + t − 1 of the cache kv [cap, 2C]. */
export function kvAppend(gpu: Gpu, qkv: Tensor, kv: Tensor, dims: DecodeDims): void {
  const r = resolve(qkv, kv, dims, 'kvAppend');
  const WG = Math.min(64, gpu.limits.maxComputeInvocationsPerWorkgroup, gpu.limits.maxComputeWorkgroupSizeX);
  gpu.dispatch({
    shader,
    entry: 'append',
    constants: { WG, DH: r.D },
    label: 'attentionDecode.append',
    params: params(r, 1, 1),
    buffers: { 1: qkv, 2: kv },
    workgroups: grid1d(gpu, r.t * 2 * r.C, WG),
  });
}

/**
 * out [t, C] and lse [H·t] (index h·t + i) of the t query rows of qkv [t, 3C] over cache positions
 * [0, past + t) of kv, row i seeing positions ≤ past + i. The new rows' keys must already be in the cache
 * (kvAppend); only the q part of qkv is read here.
 */
export function attentionDecode(
  gpu: Gpu,
  qkv: Tensor,
  kv: Tensor,
  dims: DecodeDims,
  opts: DecodeOptions = {},
): { out: Tensor; lse: Tensor } {
  const r = resolve(qkv, kv, dims, 'attentionDecode');
  const plan = chooseDecodePlan(gpu, r.t, { ...dims, headDim: r.D }, opts);
  const WG = plan.workgroup;
  const constants = { WG, DH: r.D };
  const par = params(r, plan.splits, plan.keysPerSplit);
  const parts = r.H * plan.splits * r.t;
  const ml = gpu.empty([parts, 2], 'f32', 'attentionDecode.ml');
  const pacc = gpu.empty([parts, r.D], 'f32', 'attentionDecode.partials');
  gpu.dispatch({
    shader,
    entry: 'partial',
    constants,
    params: par,
    label: 'attentionDecode.partial',
    buffers: { 1: qkv, 2: kv, 3: ml, 4: pacc },
    workgroups: grid1d(gpu, parts, WG),
  });
  const out = gpu.empty([r.t, r.C], 'f32', 'attentionDecode.out');
  const lse = gpu.empty([r.H * r.t], 'f32', 'attentionDecode.lse');
  gpu.dispatch({
    shader,
    entry: 'combine',
    constants,
    params: par,
    label: 'attentionDecode.combine',
    buffers: { 3: ml, 4: pacc, 5: out, 6: lse },
    workgroups: grid1d(gpu, r.H * r.t * Math.ceil(r.D / 4), WG),
  });
  gpu.release(ml, pacc);
  return { out, lse };
}

function params(r: Resolved, splits: number, keysPerSplit: number): Param[] {
  return [
    ['u32', r.t],
    ['u32', r.past],
    ['u32', r.H],
    ['u32', r.C],
    ['u32', splits],
    ['u32', keysPerSplit],
    ['f32', 1 / Math.sqrt(r.D)],
  ];
}

/**
 * Matrix-product FLOPs of t rows over a cache (QKᵀ and PV for each visible (query, key) pair), as attentionFlops counts
 * them.
 */
export function attentionDecodeFlops(t: number, past: number, channels: number): number {
  const pairs = t * past + (t * (t + 1)) / 2;
  return 4 * channels * pairs;
}
