import { describe, expect, it } from 'vitest';
import { makeBasis, SubspaceBasis } from '../../src/compress/basis.ts';
import { CodecError, type Codec, type CodecContext } from '../../src/compress/codec.ts';
import { CODEC_NAMES, Int8Codec, makeCodec, NoneCodec, stack, SubspaceCodec } from '../../src/compress/codecs.ts';
import { Rng } from '../../src/ops/rng.ts';

const act = (ids: Int32Array): CodecContext => ({ ids, kind: 'act' });
const grad = (ids: Int32Array): CodecContext => ({ ids, kind: 'grad' });

/** Rows of very different magnitudes (as residual streams and gradients have), some zero rows, odd width. */
function sample(rows: number, width: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const mag = r % 7 === 3 ? 0 : 10 ** rng.uniform(-6, 3);
    for (let i = 0; i < width; i++) x[r * width + i] = rng.normal() * mag;
  }
  return x;
}

function expectCodecError(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a CodecError').toBeInstanceOf(CodecError);
  expect((err as Error).message).toMatch(pattern);
}

describe('basis', () => {
  it('is orthonormal, deterministic from the seed, and differs across seeds', () => {
    const a = new SubspaceBasis({ seed: 5, k: 8, vocab: 50, width: 40 });
    const b = new SubspaceBasis({ seed: 5, k: 8, vocab: 50, width: 40 });
    const c = new SubspaceBasis({ seed: 6, k: 8, vocab: 50, width: 40 });
    expect(Buffer.from(a.U.buffer).equals(Buffer.from(b.U.buffer))).toBe(true);
    expect(Buffer.from(a.E.buffer).equals(Buffer.from(b.E.buffer))).toBe(true);
    expect(Buffer.from(a.U.buffer).equals(Buffer.from(c.U.buffer))).toBe(false);
    let worst = 0;
    for (let p = 0; p < 8; p++) {
      for (let q = 0; q < 8; q++) {
        let s = 0;
        for (let i = 0; i < 40; i++) s += a.U[i * 8 + p] * a.U[i * 8 + q];
        worst = Math.max(worst, Math.abs(s - (p === q ? 1 : 0)));
      }
    }
    expect(worst).toBeLessThan(1e-14);
    let m2 = 0;
    for (const e of a.E) m2 += e * e;
    expect(Math.sqrt(m2 / a.E.length)).toBeGreaterThan(0.018);
    expect(Math.sqrt(m2 / a.E.length)).toBeLessThan(0.022);
    expect(makeBasis({ seed: 5, k: 8, vocab: 50, width: 40 })).toBe(makeBasis({ seed: 5, k: 8, vocab: 50, width: 40 }));
    expectCodecError(() => new SubspaceBasis({ seed: 1, k: 41, vocab: 5, width: 40 }), /k must be/);
  });
});

describe('round trips', () => {
  const rows = 23;
  const W = 45;
  const ids = new Rng(9).ints(rows, 50);

  it('none is bit-exact', () => {
    const x = sample(rows, W, 1);
    const c = new NoneCodec();
    const bytes = c.encode(x, [rows, W], act(ids));
    expect(bytes.length).toBe(rows * c.bytesPerToken(W, 'act'));
    expect(Buffer.from(c.decode(bytes, [rows, W], act(ids)).buffer).equals(Buffer.from(x.buffer))).toBe(true);
  });

  it('int8 decodes within scale/2 per element, zero rows exactly', () => {
    const x = sample(rows, W, 2);
    x[5 * W + 3] = 1e-44; // a row whose max/127 underflows float32
    const c = new Int8Codec();
    for (const ctx of [act(ids), grad(ids)]) {
      const bytes = c.encode(x, [rows, W], ctx);
      expect(bytes.length).toBe(rows * c.bytesPerToken(W, ctx.kind));
      const y = c.decode(bytes, [rows, W], ctx);
      const scales = new Float32Array(bytes.slice(0, rows * 4).buffer);
      let worst = 0;
      for (let r = 0; r < rows; r++) {
        let max = 0;
        for (let i = 0; i < W; i++) max = Math.max(max, Math.abs(x[r * W + i]));
        expect(scales[r]).toBeCloseTo(max / 127, 6);
        if (max === 0) expect(y.subarray(r * W, (r + 1) * W).every((v) => v === 0)).toBe(true);
        for (let i = 0; i < W; i++) {
          const e = Math.abs(y[r * W + i] - x[r * W + i]);
          expect(e).toBeLessThanOrEqual(scales[r] / 2 + Math.abs(x[r * W + i]) * 2 ** -23);
          if (scales[r] > 0) worst = Math.max(worst, e / scales[r]);
        }
      }
      expect(worst).toBeGreaterThan(0.4); // the bound is tight, i.e. we really quantise
    }
  });

  it('subspace is exact on E_fixed[ids] + span(U) and the projection otherwise; gradients skip E_fixed', () => {
    const C = 48;
    const k = 6;
    const V = 50;
    const codec = makeCodec('subspace', { seed: 3, k, vocab: V, width: C }) as SubspaceCodec;
    const { U, E } = codec.basis;
    const P = codec.basis.projector();
    const rng = new Rng(4);
    // h = E_fixed[ids] + U·c (c of mixed magnitudes)
    const h = new Float32Array(rows * C);
    for (let r = 0; r < rows; r++) {
      const c = Array.from({ length: k }, () => rng.normal() * 10 ** rng.uniform(-1, 1));
      for (let i = 0; i < C; i++) {
        let s = E[ids[r] * C + i];
        for (let j = 0; j < k; j++) s += U[i * k + j] * c[j];
        h[r * C + i] = s;
      }
    }
    const bytes = codec.encode(h, [rows, C], act(ids));
    expect(bytes.length).toBe(rows * codec.bytesPerToken(C, 'act'));
    expect(bytes.length).toBe(rows * k * 4);
    const y = codec.decode(bytes, [rows, C], act(ids));
    let err = 0;
    let ref = 0;
    for (let i = 0; i < h.length; i++) {
      err = Math.max(err, Math.abs(y[i] - h[i]));
      ref = Math.max(ref, Math.abs(h[i]));
    }
    expect(err / ref).toBeLessThan(1e-6);
    expect(codec.offSubspace(h, [rows, C], act(ids))).toBeLessThan(1e-6);

    // Arbitrary x: the receiver gets E_fixed[ids] + P(x − E_fixed[ids]) (activations) or P·x (gradients).
    const x = sample(rows, C, 5);
    for (const ctx of [act(ids), grad(ids)]) {
      const z = codec.decode(codec.encode(x, [rows, C], ctx), [rows, C], ctx);
      let e2 = 0;
      for (let r = 0; r < rows; r++) {
        const e = (i: number) => (ctx.kind === 'act' ? E[ids[r] * C + i] : 0);
        let rowMax = 0;
        for (let i = 0; i < C; i++) rowMax = Math.max(rowMax, Math.abs(x[r * C + i] - e(i)), Math.abs(e(i)));
        for (let i = 0; i < C; i++) {
          let s = e(i);
          for (let j = 0; j < C; j++) s += P[i * C + j] * (x[r * C + j] - e(j));
          e2 = Math.max(e2, Math.abs(z[r * C + i] - s) / (rowMax || 1));
        }
      }
      expect(e2).toBeLessThan(1e-6);
      expect(codec.offSubspace(x, [rows, C], ctx)).toBeGreaterThan(0.5);
    }
  });

  it('subspace+int8 reconstructs the coefficients within int8 error', () => {
    const C = 128;
    const k = 8;
    const p = { seed: 11, k, vocab: 50, width: C };
    const sub = makeCodec('subspace', p) as SubspaceCodec;
    const stacked = makeCodec('subspace+int8', p);
    expect(stacked.name).toBe('subspace+int8');
    const x = sample(rows, C, 6);
    for (const ctx of [act(ids), grad(ids)]) {
      const bytes = stacked.encode(x, [rows, C], ctx);
      expect(bytes.length).toBe(rows * stacked.bytesPerToken(C, ctx.kind));
      const y = stacked.decode(bytes, [rows, C], ctx);
      const c = sub.reduce(x, [rows, C], ctx);
      const cy = sub.reduce(y, [rows, C], ctx);
      for (let r = 0; r < rows; r++) {
        let max = 0;
        for (let j = 0; j < k; j++) max = Math.max(max, Math.abs(c[r * k + j]));
        const scale = max / 127;
        for (let j = 0; j < k; j++)
          expect(Math.abs(cy[r * k + j] - c[r * k + j])).toBeLessThanOrEqual(
            (scale / 2) * (1 + 1e-5) + 1e-6 * max + 1e-30,
          );
      }
      // and y is E_fixed + span(U) (or span(U)) exactly, so encoding it again is lossless up to int8 of c
      expect(sub.offSubspace(y, [rows, C], ctx)).toBeLessThan(1e-5);
    }
  });
});

describe('bytes per token', () => {
  it('C = 128, k = 8: none 512, int8 132, subspace 32, subspace+int8 12', () => {
    const p = { seed: 1, k: 8, vocab: 64, width: 128 };
    const want: Record<string, number> = { none: 512, int8: 132, subspace: 32, 'subspace+int8': 12 };
    const report: string[] = [];
    const rows = 10;
    const ids = new Rng(1).ints(rows, 64);
    const x = sample(rows, 128, 7);
    for (const name of CODEC_NAMES) {
      const c = makeCodec(name, p);
      for (const kind of ['act', 'grad'] as const) {
        expect(c.bytesPerToken(128, kind)).toBe(want[name]);
        expect(c.encode(x, [rows, 128], { ids, kind }).length / rows).toBe(want[name]);
      }
      report.push(`${name}: ${want[name]} B/token (${(512 / want[name]).toFixed(1)}× fewer than none)`);
    }
    console.log(`[compress] C=128 k=8 — ${report.join('; ')}`);
    // With C = 1024 (a GPT-2-small-sized stream) the same k gives 4096/12 ≈ 341×.
    expect(
      makeCodec('none').bytesPerToken(1024, 'act') /
        makeCodec('subspace+int8', { ...p, width: 1024 }).bytesPerToken(1024, 'act'),
    ).toBeGreaterThan(100);
  });
});

describe('bad input', () => {
  const rows = 4;
  const C = 16;
  const p = { seed: 2, k: 4, vocab: 10, width: C };
  const ids = Int32Array.from([1, 2, 3, 4]);
  const codecs: Codec[] = CODEC_NAMES.map((n) => makeCodec(n, p));

  it('NaN and Inf are refused at encode, never encoded', () => {
    for (const c of codecs) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const x = new Float32Array(rows * C).fill(0.5);
        x[2 * C + 5] = bad;
        for (const kind of ['act', 'grad'] as const)
          expectCodecError(() => c.encode(x, [rows, C], { ids, kind }), /non-finite value .* row 2, column 5/);
      }
    }
  });

  it('wrong shapes, lengths, ids and kinds are refused with a reason', () => {
    const x = new Float32Array(rows * C).fill(0.25);
    for (const c of codecs) {
      expectCodecError(() => c.encode(x, [rows, C + 1], act(ids)), /values for shape|width/);
      expectCodecError(() => c.encode(x.subarray(1), [rows, C], act(ids)), /values for shape/);
      expectCodecError(() => c.encode(x, [rows, 0] as const, act(ids)), /shape must be/);
      expectCodecError(() => c.encode(x, [-1, C] as const, act(ids)), /shape must be/);
      expectCodecError(() => c.encode(Array.from(x) as unknown as Float32Array, [rows, C], act(ids)), /Float32Array/);
      expectCodecError(() => c.encode(x, [rows, C], { ids, kind: 'fwd' as 'act' }), /kind/);
    }
    const sub = makeCodec('subspace', p);
    expectCodecError(() => sub.encode(x, [rows, C], act(ids.subarray(1))), /3 token ids for 4 rows/);
    expectCodecError(() => sub.encode(x, [rows, C], act(Int32Array.from([1, 2, 10, 0]))), /token id 10 at row 2/);
    expectCodecError(() => sub.encode(x, [rows, C], act(Int32Array.from([1, -1, 0, 0]))), /token id -1/);
    expectCodecError(() => sub.bytesPerToken(32, 'act'), /basis is for width 16/);
    expectCodecError(() => makeCodec('zstd'), /unknown codec 'zstd'/);
    expectCodecError(() => makeCodec('subspace', { seed: 1, k: 4, width: 16 }), /needs vocab/);
    // Gradients do not need token ids.
    const g = sub.decode(sub.encode(x, [rows, C], { ids: new Int32Array(0), kind: 'grad' }), [rows, C], {
      ids: new Int32Array(0),
      kind: 'grad',
    });
    expect(g.length).toBe(rows * C);
  });

  it('truncated, padded and malformed payloads are refused', () => {
    const rng = new Rng(3);
    const x = rng.f32(rows * C);
    for (const c of codecs) {
      const bytes = c.encode(x, [rows, C], act(ids));
      expectCodecError(
        () => c.decode(bytes.subarray(0, bytes.length - 1), [rows, C], act(ids)),
        /truncated or malformed/,
      );
      expectCodecError(() => c.decode(new Uint8Array(0), [rows, C], act(ids)), /truncated or malformed/);
      const padded = new Uint8Array(bytes.length + 4);
      padded.set(bytes);
      expectCodecError(() => c.decode(padded, [rows, C], act(ids)), /truncated or malformed/);
      expectCodecError(() => c.decode(bytes, [rows + 1, C], act(ids)), /truncated or malformed/);
      // An unaligned view of a valid payload decodes the same.
      const shifted = new Uint8Array(bytes.length + 1);
      shifted.set(bytes, 1);
      expect(c.decode(shifted.subarray(1), [rows, C], act(ids))).toEqual(c.decode(bytes, [rows, C], act(ids)));
    }
    // float payloads holding NaN / Inf
    const nan = new Uint8Array(new Float32Array([1, NaN, 2, 3]).buffer);
    expectCodecError(() => new NoneCodec().decode(nan, [2, 2], act(ids)), /decodes to NaN at row 0, column 1/);
    const sub = makeCodec('subspace', p);
    const inf = new Uint8Array(new Float32Array(rows * 4).fill(Infinity).buffer);
    expectCodecError(() => sub.decode(inf, [rows, C], act(ids)), /decodes to Infinity/);
    // int8: bad scales and the never-written −128
    const i8 = new Int8Codec();
    const good = i8.encode(x, [rows, C], act(ids));
    for (const s of [NaN, -1, Infinity, 3e38]) {
      const bad = good.slice();
      new DataView(bad.buffer).setFloat32(4, s, true);
      expectCodecError(() => i8.decode(bad, [rows, C], act(ids)), /row 1 has scale/);
    }
    const bad = good.slice();
    bad[rows * 4 + C + 2] = 0x80;
    expectCodecError(() => i8.decode(bad, [rows, C], act(ids)), /row 1, column 2 holds −128/);
    // stacked: the int8 layer's checks apply to the coefficients
    const st = stack(new SubspaceCodec(makeBasis(p)), i8);
    const sb = st.encode(x, [rows, C], act(ids));
    sb[rows * 4] = 0x80;
    expectCodecError(() => st.decode(sb, [rows, C], act(ids)), /holds −128/);
  });
});
