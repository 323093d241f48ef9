import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { checkEmbedding } from '../../src/ops/embedding.check.ts';
import { TokenRangeError } from '../../src/gpu/index.ts';
import { embedding, embeddingBackward, tokenPositionsCsr } from '../../src/ops/embedding.ts';
import { embeddingBackwardRef, embeddingRef } from '../../src/ops/embedding.ref.ts';
import { Rng } from '../../src/ops/rng.ts';
import { checkGradient, dot, projection } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('embedding', () => {
  it('reference backward matches central finite differences (repeated ids)', () => {
    const [batch, seq, tmax, vocab, c] = [2, 4, 6, 5, 3];
    const ids = Int32Array.from([1, 3, 1, 1, 0, 3, 4, 1]); // token 1 four times, token 2 never
    const rng = new Rng(2);
    const wte = Float64Array.from({ length: vocab * c }, () => rng.uniform());
    const wpe = Float64Array.from({ length: tmax * c }, () => rng.uniform());
    const w = projection(batch * seq * c, 4);
    const { dwte, dwpe } = embeddingBackwardRef(w, ids, vocab, batch, seq, c);
    // wpe rows ≥ seq are unused: their gradient is 0 (dwpe covers rows < seq only).
    const dwpeFull = new Float64Array(tmax * c);
    dwpeFull.set(dwpe);
    expectAllPass([
      checkGradient('embedding dwte', (v) => dot(embeddingRef(ids, v, wpe, batch, seq, c), w), wte, dwte),
      checkGradient('embedding dwpe', (v) => dot(embeddingRef(ids, wte, v, batch, seq, c), w), wpe, dwpeFull),
    ]);
  });

  it('builds the token → positions CSR in ascending position order', () => {
    const { offsets, positions } = tokenPositionsCsr(Int32Array.from([2, 0, 2, 2, 0]), 4);
    expect([...offsets]).toEqual([0, 2, 2, 5, 5]);
    expect([...positions]).toEqual([1, 4, 0, 2, 3]);
  });

  it('WGSL forward and backward match the float64 reference', async () => {
    const results = await checkEmbedding(await testGpu(), 'full');
    expectAllPass(results);
  });

  it('is deterministic (bit-identical on repeat)', async () => {
    const gpu = await testGpu();
    const rng = new Rng(4);
    const [batch, seq, vocab, c] = [4, 32, 50, 24];
    const ids = rng.ints(batch * seq, vocab);
    const dx = gpu.upload(rng.f32(batch * seq * c), [batch * seq, c]);
    const run = async () => {
      const r = embeddingBackward(gpu, dx, ids, vocab, { batch, seq });
      const out = [await gpu.read(r.dwte), await gpu.read(r.dwpe)];
      gpu.release(r.dwte, r.dwpe);
      return out;
    };
    expect(await run()).toEqual(await run());
    gpu.release(dx);
  });

  it('gives a NaN row for an out-of-range id in the forward', async () => {
    const gpu = await testGpu();
    const ids = gpu.upload(Int32Array.from([0, 7, -1]), [3]);
    const wte = gpu.upload(new Float32Array(4 * 2), [4, 2]);
    const wpe = gpu.upload(new Float32Array(3 * 2), [3, 2]);
    const x = await gpu.read(embedding(gpu, ids, wte, wpe, { batch: 1, seq: 3 }));
    expect([...x].map(Number.isNaN)).toEqual([false, false, true, true, true, true]);
    gpu.release(ids, wte, wpe);
  });

  it('rejects bad shapes, dtypes and ids with typed errors', async () => {
    const gpu = await testGpu();
    const dims = { batch: 2, seq: 3 };
    const ids = gpu.upload(new Int32Array(6), [6]);
    const idsF = gpu.upload(new Float32Array(6), [6]);
    const ids5 = gpu.upload(new Int32Array(5), [5]);
    const wte = gpu.upload(new Float32Array(10 * 4), [10, 4]);
    const wpe = gpu.upload(new Float32Array(3 * 4), [3, 4]);
    const wpe2 = gpu.upload(new Float32Array(2 * 4), [2, 4]);
    const wpe5 = gpu.upload(new Float32Array(3 * 5), [3, 5]);
    const dx = gpu.upload(new Float32Array(6 * 4), [6, 4]);
    const dx5 = gpu.upload(new Float32Array(5 * 4), [5, 4]);
    expect(() => embedding(gpu, idsF, wte, wpe, dims)).toThrow(DTypeError);
    expect(() => embedding(gpu, ids5, wte, wpe, dims)).toThrow(ShapeError);
    expect(() => embedding(gpu, ids, wte, wpe2, dims)).toThrow(ShapeError); // seq > Tmax
    expect(() => embedding(gpu, ids, wte, wpe5, dims)).toThrow(ShapeError); // C differs
    expect(() => embedding(gpu, ids, wpe, wte, { batch: 2, seq: 0 })).toThrow(ShapeError);
    expect(() => embeddingBackward(gpu, dx, Int32Array.from([0, 1, 2, 3, 4, 10]), 10, dims)).toThrow(TokenRangeError);
    expect(() => embeddingBackward(gpu, dx, Int32Array.from([0, 1, -1, 3, 4, 5]), 10, dims)).toThrow(TokenRangeError);
    expect(() => embeddingBackward(gpu, dx, new Int32Array(5), 10, dims)).toThrow(ShapeError);
    expect(() => embeddingBackward(gpu, dx5, new Int32Array(6), 10, dims)).toThrow(ShapeError);
    expect(() => embeddingBackward(gpu, ids, new Int32Array(6), 10, dims)).toThrow(DTypeError);
    gpu.release(ids, idsF, ids5, wte, wpe, wpe2, wpe5, dx, dx5);
  });
});
