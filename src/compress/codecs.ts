import { makeBasis, projectCoefficients, type SubspaceBasis, type BasisParams } from './basis.ts';
import { CodecError, type Codec, type CodecContext } from './codec.ts';

/**
 * Boundary codecs. Wire formats carry no header: the receiver knows the shape [rows, width] and the codec
 * from the schedule, so the payload is exactly rows·bytesPerToken(width) bytes, and any other length is a
 * truncated or padded message (CodecError). All numbers are little-endian.
 *
 *   none          rows·width float32
 *   int8          rows float32 scales, then rows·width int8 (q ∈ [−127, 127]; x ≈ q·scale)
 *   subspace      rows·k float32 coefficients c = Uᵀ(h − E_fixed[ids]) (activations) or Uᵀg (gradients)
 *   subspace+int8 the int8 format of the [rows, k] coefficients
 */

export type CodecName = 'none' | 'int8' | 'subspace' | 'subspace+int8';
export const CODEC_NAMES: readonly CodecName[] = ['none', 'int8', 'subspace', 'subspace+int8'];

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function checkShape(name: string, shape: readonly [number, number]): [number, number] {
  if (
    !Array.isArray(shape) ||
    shape.length !== 2 ||
    !shape.every((d) => Number.isInteger(d) && d >= 0) ||
    shape[1] < 1
  ) {
    throw new CodecError(`${name}: shape must be [rows ≥ 0, width ≥ 1] integers, got [${String(shape)}]`);
  }
  return [shape[0], shape[1]];
}

function checkKind(name: string, ctx: CodecContext): void {
  if (!ctx || (ctx.kind !== 'act' && ctx.kind !== 'grad'))
    throw new CodecError(`${name}: context kind must be 'act' or 'grad', got ${String(ctx?.kind)}`);
}

/** Validates an input tensor: a Float32Array of rows·width finite values. */
function checkInput(name: string, x: Float32Array, rows: number, width: number): void {
  if (!(x instanceof Float32Array))
    throw new CodecError(`${name}: input must be a Float32Array, got ${Object.prototype.toString.call(x)}`);
  if (x.length !== rows * width)
    throw new CodecError(`${name}: ${x.length} values for shape [${rows}, ${width}] (want ${rows * width})`);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      throw new CodecError(
        `${name}: non-finite value ${x[i]} at row ${Math.floor(i / width)}, column ${i % width}: refusing to encode`,
      );
    }
  }
}

function checkBytes(name: string, bytes: Uint8Array, want: number, rows: number, width: number): void {
  if (!(bytes instanceof Uint8Array))
    throw new CodecError(`${name}: payload must be a Uint8Array, got ${Object.prototype.toString.call(bytes)}`);
  if (bytes.length !== want) {
    throw new CodecError(
      `${name}: payload of ${bytes.length} bytes for shape [${rows}, ${width}] (want ${want}): truncated or malformed`,
    );
  }
}

function checkWidthArg(name: string, width: number): void {
  if (!Number.isInteger(width) || width < 1)
    throw new CodecError(`${name}: width must be a positive integer, got ${width}`);
}

function f32ToBytes(x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length * 4);
  if (LITTLE_ENDIAN) out.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  else {
    const dv = new DataView(out.buffer);
    for (let i = 0; i < x.length; i++) dv.setFloat32(i * 4, x[i], true);
  }
  return out;
}

/** Reads n float32 from bytes[off..] (any alignment) into a fresh array. */
function bytesToF32(bytes: Uint8Array, off: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes.subarray(off, off + n * 4));
  else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset + off, n * 4);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
  }
  return out;
}

function checkFiniteOutput(name: string, y: Float32Array, width: number): void {
  for (let i = 0; i < y.length; i++) {
    if (!Number.isFinite(y[i]))
      throw new CodecError(
        `${name}: payload decodes to ${y[i]} at row ${Math.floor(i / width)}, column ${i % width}: malformed`,
      );
  }
}

/** Raw float32: the baseline, and the codec of boundaries left uncompressed. */
export class NoneCodec implements Codec {
  readonly name: string = 'none';
  encode(x: Float32Array, shape: readonly [number, number], ctx: CodecContext): Uint8Array {
    const [rows, width] = checkShape(this.name, shape);
    checkKind(this.name, ctx);
    checkInput(this.name, x, rows, width);
    return f32ToBytes(x);
  }
  decode(bytes: Uint8Array, shape: readonly [number, number], ctx: CodecContext): Float32Array {
    const [rows, width] = checkShape(this.name, shape);
    checkKind(this.name, ctx);
    checkBytes(this.name, bytes, rows * width * 4, rows, width);
    const y = bytesToF32(bytes, 0, rows * width);
    checkFiniteOutput(this.name, y, width);
    return y;
  }
  bytesPerToken(width: number, _kind: 'act' | 'grad'): number {
    checkWidthArg(this.name, width);
    return 4 * width;
  }
}

/** Largest scale whose 127·scale is still a finite float32. */
const MAX_SCALE = 3.4028234663852886e38 / 127;
/** The smallest positive float32 (denormal): the scale of rows whose max|x|/127 underflows to 0. */
const MIN_SCALE = 2 ** -149;

/**
 * Symmetric int8 with one float32 scale per row (token): scale = max|x|/127, q = round(x/scale). Each
 * element decodes within scale/2 (plus float32 rounding of q·scale). Rows are tokens, whose activations differ
 * in magnitude by orders (the residual stream grows with depth; gradients vary by position), so a per-row scale
 * loses far less than one per tensor for 4 extra bytes per token.
 */
export class Int8Codec implements Codec {
  readonly name: string = 'int8';
  encode(x: Float32Array, shape: readonly [number, number], ctx: CodecContext): Uint8Array {
    const [rows, width] = checkShape(this.name, shape);
    checkKind(this.name, ctx);
    checkInput(this.name, x, rows, width);
    const out = new Uint8Array(rows * (4 + width));
    const scales = new Float32Array(rows);
    const q = new Int8Array(out.buffer, rows * 4, rows * width);
    for (let r = 0; r < rows; r++) {
      const o = r * width;
      let max = 0;
      for (let i = 0; i < width; i++) max = Math.max(max, Math.abs(x[o + i]));
      let scale = Math.fround(max / 127);
      if (scale === 0 && max > 0) scale = MIN_SCALE;
      scales[r] = scale;
      if (scale === 0) continue; // an all-zero row: q stays 0
      for (let i = 0; i < width; i++) {
        const v = Math.round(x[o + i] / scale);
        q[o + i] = Math.min(127, Math.max(-127, v));
      }
    }
    out.set(f32ToBytes(scales), 0);
    return out;
  }
  decode(bytes: Uint8Array, shape: readonly [number, number], ctx: CodecContext): Float32Array {
    const [rows, width] = checkShape(this.name, shape);
    checkKind(this.name, ctx);
    checkBytes(this.name, bytes, rows * (4 + width), rows, width);
    const scales = bytesToF32(bytes, 0, rows);
    const q = new Int8Array(bytes.buffer, bytes.byteOffset + rows * 4, rows * width);
    const y = new Float32Array(rows * width);
    for (let r = 0; r < rows; r++) {
      const s = scales[r];
      if (!(s >= 0 && s <= MAX_SCALE))
        throw new CodecError(
          `${this.name}: row ${r} has scale ${s} (must be finite, ≥ 0 and ≤ ${MAX_SCALE}): malformed`,
        );
      const o = r * width;
      for (let i = 0; i < width; i++) {
        const v = q[o + i];
        if (v === -128)
          throw new CodecError(
            `${this.name}: row ${r}, column ${i} holds −128, which the encoder never writes: malformed`,
          );
        y[o + i] = v * s;
      }
    }
    return y;
  }
  bytesPerToken(width: number, _kind: 'act' | 'grad'): number {
    checkWidthArg(this.name, width);
    return 4 + width;
  }
}

/**
 * A codec that maps [rows, width] to a smaller [rows, reducedWidth] float representation and back; another
 * codec can then encode the reduced tensor (see stack()).
 */
export interface ReducingCodec extends Codec {
  reducedWidth(width: number): number;
  /** The reduced tensor [rows, reducedWidth(width)]; validates x and ctx like encode. */
  reduce(x: Float32Array, shape: readonly [number, number], ctx: CodecContext): Float32Array;
  /** Rebuilds [rows, width] from a reduced tensor; validates y and ctx like decode. */
  expand(y: Float32Array, shape: readonly [number, number], ctx: CodecContext): Float32Array;
}

/**
 * Pluralis' Protocol-Models compression. Every peer derives the same orthonormal U [C,k] and token table
 * E_fixed [V,C] from the seed (SubspaceBasis). Activations: c = Uᵀ(h − E_fixed[ids]) (k floats per token; the
 * token ids travel with every micro-batch anyway) and the receiver rebuilds h = U·c + E_fixed[ids]. This is
 * exact when h − E_fixed[ids] ∈ span(U), which subspace-model.ts maintains; otherwise the receiver gets
 * E_fixed[ids] + P(h − E_fixed[ids]), P = U·Uᵀ.
 *
 * Gradients: send Uᵀg, rebuild U·Uᵀg = P·g. Why this is exact for the upstream stage's parameter gradients:
 * with every residual write of stages ≤ the boundary kept in span(U) (write matrices W·P, biases b·P, wte − E
 * and wpe projected), the boundary activation is h = E_fixed[ids] + (wpe + Σ writes), and a parameter θ of the
 * upstream stage moves h only through those writes, so ∂h/∂θ ∈ span(U) for EVERY value of θ on the constrained
 * set. Hence ∂L/∂θ = ⟨g, ∂h/∂θ⟩ = ⟨P·g, ∂h/∂θ⟩ (P is symmetric and fixes span(U)): the dropped part (I − P)·g
 * is orthogonal to anything the upstream stage can change. For qkv/fc weights, LayerNorm gains and every other
 * parameter that is not itself a residual write, the backward pass with P·g yields the same gradient as with g
 * (exactly in real arithmetic; float32 rounding aside). For the write weights themselves (attn/mlp proj.w and .b, wte,
 * wpe) the gradient becomes its tangent projection G·P onto the constraint set, i.e. the gradient of the constrained
 * model; the full gradient differs only by a component that subspaceProject removes. The gradient the upstream
 * stage passes further back differs from the uncompressed one only by (I − P)·g, which the next subspace
 * boundary drops in turn, so the argument repeats stage by stage.
 */
export class SubspaceCodec implements ReducingCodec {
  readonly name: string = 'subspace';
  readonly basis: SubspaceBasis;
  constructor(basis: SubspaceBasis) {
    this.basis = basis;
  }

  reducedWidth(width: number): number {
    this.checkWidth(width);
    return this.basis.k;
  }

  private checkWidth(width: number): void {
    checkWidthArg(this.name, width);
    if (width !== this.basis.width)
      throw new CodecError(`${this.name}: the basis is for width ${this.basis.width}, got width ${width}`);
  }

  /** The token ids of an activation tensor: one per row, each a valid row of E_fixed. */
  private checkIds(ctx: CodecContext, rows: number): Int32Array | undefined {
    if (ctx.kind !== 'act') return undefined;
    const ids = ctx.ids;
    if (!(ids instanceof Int32Array)) throw new CodecError(`${this.name}: activations need ctx.ids as an Int32Array`);
    if (ids.length !== rows) throw new CodecError(`${this.name}: ${ids.length} token ids for ${rows} rows`);
    const V = this.basis.vocab;
    for (let r = 0; r < rows; r++) {
      if (!(ids[r] >= 0 && ids[r] < V))
        throw new CodecError(`${this.name}: token id ${ids[r]} at row ${r} is outside [0, ${V})`);
    }
    return ids;
  }

  reduce(x: Float32Array, shape: readonly [number, number], ctx: CodecContext): Float32Array {
    const [rows, width] = checkShape(this.name, shape);
    checkKind(this.name, ctx);
    this.checkWidth(width);
    checkInput(this.name, x, rows, width);
    const ids = this.checkIds(ctx, rows);
    const { U, E, k } = this.basis;
    const C = width;
    const out = new Float32Array(rows * k);
    const c = new Float64Array(k);
    for (let r = 0; r < rows; r++) {
      projectCoefficients(U, x, r * C, C, k, c, ids ? E : undefined, ids ? ids[r] * C : 0);
      for (let j = 0; j < k; j++) out[r * k + j] = c[j];
    }
    checkFiniteOutput(this.name, out, k); // finite inputs can still overflow float32 in Uᵀh
    return out;
  }

  expand(y: Float32Array, shape: readonly [number, number], ctx: CodecContext): Float32Array {
    const [rows, width] = checkShape(this.name, shape);
    checkKind(this.name, ctx);
    this.checkWidth(width);
    const { U, E, k } = this.basis;
    if (!(y instanceof Float32Array) || y.length !== rows * k) {
      throw new CodecError(`${this.name}: ${y?.length} coefficients for ${rows} rows of k = ${k}`);
    }
    checkFiniteOutput(this.name, y, k);
    const ids = this.checkIds(ctx, rows);
    const C = width;
    const out = new Float32Array(rows * C);
    for (let r = 0; r < rows; r++) {
      const e = ids ? ids[r] * C : -1;
      for (let i = 0; i < C; i++) {
        let s = 0;
        for (let j = 0; j < k; j++) s += U[i * k + j] * y[r * k + j];
        out[r * C + i] = e >= 0 ? s + E[e + i] : s;
      }
    }
    checkFiniteOutput(this.name, out, C);
    return out;
  }

  encode(x: Float32Array, shape: readonly [number, number], ctx: CodecContext): Uint8Array {
    return f32ToBytes(this.reduce(x, shape, ctx));
  }

  decode(bytes: Uint8Array, shape: readonly [number, number], ctx: CodecContext): Float32Array {
    const [rows, width] = checkShape(this.name, shape);
    checkKind(this.name, ctx);
    this.checkWidth(width);
    checkBytes(this.name, bytes, rows * this.basis.k * 4, rows, width);
    return this.expand(bytesToF32(bytes, 0, rows * this.basis.k), shape, ctx);
  }

  bytesPerToken(width: number, _kind: 'act' | 'grad'): number {
    this.checkWidth(width);
    return 4 * this.basis.k;
  }

  /**
   * ‖(I − P)(x − E_fixed[ids])‖ / ‖x − E_fixed[ids]‖ over the whole tensor (E omitted for gradients): the
   * relative part the codec drops. Near float32 epsilon when the model keeps its residual writes in span(U).
   */
  offSubspace(x: Float32Array, shape: readonly [number, number], ctx: CodecContext): number {
    const [rows, width] = checkShape(this.name, shape);
    const c = this.reduce(x, shape, ctx);
    const ids = this.checkIds(ctx, rows);
    const { U, E, k } = this.basis;
    let off = 0;
    let all = 0;
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < width; i++) {
        const d = x[r * width + i] - (ids ? E[ids[r] * width + i] : 0);
        let s = 0;
        for (let j = 0; j < k; j++) s += U[i * k + j] * c[r * k + j];
        off += (d - s) ** 2;
        all += d * d;
      }
    }
    return all === 0 ? 0 : Math.sqrt(off / all);
  }
}

/** outer then inner: e.g. stack(subspace, int8) quantises the k subspace coefficients of each token to int8. */
export function stack(outer: ReducingCodec, inner: Codec): Codec {
  const name = `${outer.name}+${inner.name}`;
  return {
    name,
    encode(x, shape, ctx) {
      const [rows, width] = checkShape(name, shape);
      const y = outer.reduce(x, shape, ctx);
      return inner.encode(y, [rows, outer.reducedWidth(width)], ctx);
    },
    decode(bytes, shape, ctx) {
      const [rows, width] = checkShape(name, shape);
      const y = inner.decode(bytes, [rows, outer.reducedWidth(width)], ctx);
      return outer.expand(y, shape, ctx);
    },
    bytesPerToken(width, kind) {
      return inner.bytesPerToken(outer.reducedWidth(width), kind);
    },
  };
}

export interface CodecParams {
  /** Seed of the shared basis (subspace codecs). */
  seed?: number;
  /** Subspace dimension (subspace codecs). */
  k?: number;
  vocab?: number;
  /** Residual width C = dModel. */
  width?: number;
  embedStd?: number;
}

function basisParams(name: string, p: CodecParams): BasisParams {
  for (const key of ['seed', 'k', 'vocab', 'width'] as const) {
    if (p[key] === undefined) throw new CodecError(`codec '${name}' needs ${key}`);
  }
  return { seed: p.seed!, k: p.k!, vocab: p.vocab!, width: p.width!, embedStd: p.embedStd };
}

/** The codec called `name` (see CODEC_NAMES); subspace codecs share one cached SubspaceBasis per parameter set. */
export function makeCodec(name: string, p: CodecParams = {}): Codec {
  switch (name) {
    case 'none':
      return new NoneCodec();
    case 'int8':
      return new Int8Codec();
    case 'subspace':
      return new SubspaceCodec(makeBasis(basisParams(name, p)));
    case 'subspace+int8':
      return stack(new SubspaceCodec(makeBasis(basisParams(name, p))), new Int8Codec());
    default:
      throw new CodecError(`unknown codec '${name}' (known: ${CODEC_NAMES.join(', ')})`);
  }
}

/** True for codecs that need the model's residual stream kept in span(U) (subspaceInit/subspaceProject). */
export function isSubspaceCodec(name: string): boolean {
  return name === 'subspace' || name.startsWith('subspace+');
}
