import { ArgumentError, ShapeError, type Gpu, type Tensor } from '../gpu/index.ts';
import type { Stage } from '../model/stage.ts';
import { matmul } from '../ops/matmul.ts';
import type { SubspaceBasis } from './basis.ts';
import { CODEC_NAMES, isSubspaceCodec, makeCodec, type CodecName, type CodecParams } from './codecs.ts';
import type { Codec } from './codec.ts';

/**
 * Keeping a model's residual stream inside E_fixed[tokens] + span(U), so the subspace codec is exact.
 *
 * Why exactness holds. A stage's output is h = wte[ids] + wpe[pos] + Σ_blocks (attn write + mlp write). With
 *   - wte = E_fixed + P(wte − E_fixed)  (so wte[ids] − E_fixed[ids] ∈ span(U)),
 *   - wpe = wpe·P                        (every position row in span(U)),
 *   - each residual write y = a·W + b with W = W·P and b = b·P (W [in, C]: every row of W, hence every
 *     combination a·W, lies in span(U); likewise b),
 * every term of h − E_fixed[ids] lies in span(U), so U·Uᵀ(h − E_fixed[ids]) = h − E_fixed[ids] and the
 * receiver's U·c + E_fixed[ids] is h itself (up to float32 rounding of the GPU's projections and of c). A later
 * stage adds its own writes, so it stays exact at its output as long as it is projected too. LayerNorm gains and
 * biases, qkv and fc weights do not write the residual stream (they only read it through a LayerNorm), so they
 * stay free: the model keeps its full C-dimensional computation inside each block; only what it ADDS to the
 * stream is confined to k dimensions (Pluralis, Protocol Models).
 *
 * AdamW's elementwise update moves these tensors off the subspace, so call subspaceProject after every
 * applyStep. Both functions run on the GPU with matmul: X ← (X·U)·Uᵀ costs 4·rows·C·k flops, cheaper than X·P.
 */

/** The tensors of a stage that write the residual stream (wte and wpe handled separately on stage 0). */
function writeNames(stage: Stage): string[] {
  const names: string[] = [];
  for (let l = stage.spec.firstLayer; l < stage.spec.endLayer; l++) {
    for (const w of ['attn.proj', 'mlp.proj']) names.push(`h.${l}.${w}.w`, `h.${l}.${w}.b`);
  }
  return names;
}

/** The parameters subspaceProject rewrites on this stage, in order. */
export function projectedParams(stage: Stage): string[] {
  return [...(stage.spec.hasEmbedding ? ['wte', 'wpe'] : []), ...writeNames(stage)];
}

interface GpuBasis {
  U: Tensor;
  Eperp?: Tensor;
}

const gpuBases = new WeakMap<Gpu, Map<SubspaceBasis, GpuBasis>>();

function onGpu(gpu: Gpu, basis: SubspaceBasis, needEperp: boolean): GpuBasis {
  let m = gpuBases.get(gpu);
  if (!m) gpuBases.set(gpu, (m = new Map()));
  let g = m.get(basis);
  if (!g) m.set(basis, (g = { U: gpu.upload(basis.U32, [basis.width, basis.k], 'f32', 'subspace.U') }));
  if (needEperp && !g.Eperp) g.Eperp = gpu.upload(basis.Eperp, [basis.vocab, basis.width], 'f32', 'subspace.Eperp');
  return g;
}

/** Frees the basis tensors uploaded to `gpu` (they are otherwise kept for the next projection). */
export function releaseSubspaceGpu(gpu: Gpu, basis: SubspaceBasis): void {
  const g = gpuBases.get(gpu)?.get(basis);
  if (!g) return;
  gpu.release(g.U, g.Eperp);
  gpuBases.get(gpu)!.delete(basis);
}

function checkStage(stage: Stage, basis: SubspaceBasis): void {
  const C = stage.cfg.dModel;
  if (basis.width !== C)
    throw new ShapeError(`subspace: basis width ${basis.width} does not match the model's dModel ${C}`);
  if (stage.spec.hasEmbedding && basis.vocab !== stage.cfg.vocab) {
    throw new ShapeError(`subspace: basis vocab ${basis.vocab} does not match the model's vocab ${stage.cfg.vocab}`);
  }
}

/** X ← (X·U)·Uᵀ (+ add) in place, X viewed as [rows, C]. */
function projectRows(gpu: Gpu, x: Tensor, U: Tensor, C: number, add?: Tensor): void {
  const rows = x.size / C;
  if (!Number.isInteger(rows)) throw new ShapeError(`subspace: tensor [${x.shape}] is not a multiple of width ${C}`);
  const view: Tensor = { buffer: x.buffer, shape: [rows, C], dtype: x.dtype, size: x.size };
  const coeff = matmul(gpu, view, U); // [rows, k]
  let out: Tensor;
  if (add) {
    out = gpu.empty([rows, C], 'f32', 'subspace.projected');
    gpu.copy(add, out);
    matmul(gpu, coeff, U, { transB: true, accumulate: out });
  } else {
    out = matmul(gpu, coeff, U, { transB: true });
  }
  gpu.copy(out, view);
  gpu.release(coeff, out);
}

/**
 * Re-projects every residual-stream write of `stage` onto span(U) (and stage 0's wte onto E_fixed + span(U),
 * wpe onto span(U)). Call after every stage.applyStep on each stage whose output crosses a subspace boundary,
 * and of every stage before it (see stagesToProject). Only parameters change: AdamW moments are left as they
 * are (the next step's update is projected again anyway).
 */
export function subspaceProject(gpu: Gpu, stage: Stage, basis: SubspaceBasis): void {
  checkStage(stage, basis);
  const C = basis.width;
  const g = onGpu(gpu, basis, stage.spec.hasEmbedding);
  if (stage.spec.hasEmbedding) {
    // wte·P + (I − P)E_fixed = E_fixed + P(wte − E_fixed)
    projectRows(gpu, stage.slots.get('wte')!.param, g.U, C, g.Eperp);
    projectRows(gpu, stage.slots.get('wpe')!.param, g.U, C);
  }
  for (const name of writeNames(stage)) {
    const slot = stage.slots.get(name);
    if (!slot) throw new ShapeError(`subspace: stage ${stage.spec.index} has no parameter ${name}`);
    projectRows(gpu, slot.param, g.U, C);
  }
}

/**
 * Call once after Stage.create (or after loading weights): puts the stage's residual writes into span(U) and
 * stage 0's token embedding onto E_fixed + span(U). The same projection as subspaceProject; a separate name so
 * the engine's intent reads clearly (and because only here are freshly initialised weights changed).
 */
export function subspaceInit(gpu: Gpu, stage: Stage, basis: SubspaceBasis): void {
  subspaceProject(gpu, stage, basis);
}

/**
 * Max over projected tensors of ‖X − proj(X)‖_F / ‖X‖_F (wte measured as wte − E_fixed), computed on the host
 * in float64: ~1e-7 right after a projection, large after an unprojected AdamW step. A diagnostic for tests and
 * for an engine that wants to assert the invariant (reads parameters back: not for every step).
 */
export async function subspaceDrift(
  gpu: Gpu,
  stage: Stage,
  basis: SubspaceBasis,
): Promise<{ max: number; by: Record<string, number> }> {
  checkStage(stage, basis);
  const { U, E, k, width: C } = basis;
  const by: Record<string, number> = {};
  let max = 0;
  for (const name of projectedParams(stage)) {
    const x = (await gpu.read(stage.slots.get(name)!.param)) as Float32Array;
    const rows = x.length / C;
    let off = 0;
    let all = 0;
    const c = new Float64Array(k);
    const d = new Float64Array(C);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < C; i++) d[i] = x[r * C + i] - (name === 'wte' ? E[r * C + i] : 0);
      c.fill(0);
      for (let i = 0; i < C; i++) for (let j = 0; j < k; j++) c[j] += U[i * k + j] * d[i];
      for (let i = 0; i < C; i++) {
        let s = 0;
        for (let j = 0; j < k; j++) s += U[i * k + j] * c[j];
        off += (d[i] - s) ** 2;
        all += d[i] ** 2;
      }
    }
    by[name] = all === 0 ? 0 : Math.sqrt(off / all);
    max = Math.max(max, by[name]);
  }
  return { max, by };
}

/**
 * Which codec each pipeline boundary uses. Boundary b sits between stage b and stage b + 1 (numStages − 1
 * boundaries); activations cross it forward and their gradients backward, both with the boundary's codec.
 */
export interface BoundaryPlan {
  /** Codec of the compressed boundaries. */
  codec: CodecName;
  /**
   * How many boundaries just before the head stay on `tailCodec` (the issue allows the last blocks before the
   * head to stay uncompressed: their writes are then free of the subspace constraint). Default 0. The head
   * stage's own blocks never need the constraint: nothing of theirs crosses a boundary.
   */
  uncompressedTail?: number;
  /** Codec of the tail boundaries; must not be a subspace codec. Default 'none'. */
  tailCodec?: CodecName;
}

function checkPlan(numBoundaries: number, plan: BoundaryPlan): void {
  if (!Number.isInteger(numBoundaries) || numBoundaries < 0)
    throw new ArgumentError(`boundary plan: numBoundaries must be an integer ≥ 0, got ${numBoundaries}`);
  if (!CODEC_NAMES.includes(plan.codec))
    throw new ArgumentError(`boundary plan: unknown codec '${plan.codec}' (known: ${CODEC_NAMES.join(', ')})`);
  const tail = plan.uncompressedTail ?? 0;
  if (!Number.isInteger(tail) || tail < 0)
    throw new ArgumentError(`boundary plan: uncompressedTail must be an integer ≥ 0, got ${tail}`);
  const tc = plan.tailCodec ?? 'none';
  if (!CODEC_NAMES.includes(tc) || isSubspaceCodec(tc))
    throw new ArgumentError(`boundary plan: tailCodec must be 'none' or 'int8', got '${tc}'`);
}

/**
 * The codec of boundary `boundary` of `numBoundaries`: plan.codec, except for the last plan.uncompressedTail
 * boundaries. Subspace boundaries must form a prefix (every stage before a subspace boundary is constrained),
 * which a tail guarantees.
 */
export function codecForBoundary(boundary: number, numBoundaries: number, plan: BoundaryPlan): CodecName {
  checkPlan(numBoundaries, plan);
  if (!Number.isInteger(boundary) || boundary < 0 || boundary >= numBoundaries) {
    throw new ArgumentError(`boundary ${boundary} is outside [0, ${numBoundaries})`);
  }
  return boundary < numBoundaries - (plan.uncompressedTail ?? 0) ? plan.codec : (plan.tailCodec ?? 'none');
}

/**
 * Whether stage `stageIndex` of `numStages` must keep its residual writes in span(U) (subspaceInit once,
 * subspaceProject after each step): iff some subspace boundary lies at or after its output, i.e. its output or
 * a later stage's output is sent through a subspace codec.
 */
export function stageNeedsSubspace(stageIndex: number, numStages: number, plan: BoundaryPlan): boolean {
  if (!Number.isInteger(stageIndex) || stageIndex < 0 || stageIndex >= numStages) {
    throw new ArgumentError(`stage ${stageIndex} is outside [0, ${numStages})`);
  }
  const nb = numStages - 1;
  checkPlan(nb, plan);
  for (let b = stageIndex; b < nb; b++) if (isSubspaceCodec(codecForBoundary(b, nb, plan))) return true;
  return false;
}

/** One codec per boundary (numStages − 1 of them), built from the plan. */
export function boundaryCodecs(numStages: number, plan: BoundaryPlan, params: CodecParams): Codec[] {
  const nb = numStages - 1;
  checkPlan(nb, plan);
  return Array.from({ length: nb }, (_, b) => makeCodec(codecForBoundary(b, nb, plan), params));
}
