import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { attentionInputs } from '../../src/ops/attention.check.ts';
import { attentionNaive, attentionNaiveBackward } from '../../src/ops/attention-naive.ts';
import { checkAttentionNaive } from '../../src/ops/attention-naive.check.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

// The reference's gradients are checked by finite differences in attention.test.ts; here only the kernel.
describe('attention, plain kernel (version 1)', () => {
  it('WGSL forward and backward match the float64 reference', { timeout: 900_000 }, async () => {
    expectAllPass(await checkAttentionNaive(await testGpu(), 'full'));
  });

  it('is deterministic and causal: a later token changes no earlier row', async () => {
    const gpu = await testGpu();
    const dims = { batch: 1, seq: 9, heads: 2 };
    const { qkv, dout } = attentionInputs([1, 9, 2, 8], 4);
    const run = async (x: Float32Array) => {
      const q = gpu.upload(x, [9, 48]);
      const dt = gpu.upload(dout, [9, 16]);
      const { out, lse } = attentionNaive(gpu, q, dims);
      const dqkv = attentionNaiveBackward(gpu, q, out, dt, lse, dims);
      const r = [await gpu.read(out), await gpu.read(lse), await gpu.read(dqkv)];
      gpu.release(q, dt, out, lse, dqkv);
      return r;
    };
    const [a, b] = [await run(qkv), await run(qkv)];
    for (let i = 0; i < 3; i++) expect(Buffer.from(b[i].buffer).equals(Buffer.from(a[i].buffer))).toBe(true);
    const changed = Float32Array.from(qkv);
    for (let c = 16; c < 48; c++) changed[8 * 48 + c] += 1; // the last token's k and v
    const [out] = await run(changed);
    expect(Array.from(out.subarray(0, 8 * 16))).toEqual(Array.from(a[0].subarray(0, 8 * 16)));
    expect(Array.from(out.subarray(8 * 16))).not.toEqual(Array.from(a[0].subarray(8 * 16)));
  });

  it('rejects bad shapes and dtypes with typed errors, as attention() does', async () => {
    const gpu = await testGpu();
    const dims = { batch: 2, seq: 3, heads: 2 };
    const good = gpu.zeros([6, 24]);
    expect(() => attentionNaive(gpu, gpu.zeros([6, 20]), dims)).toThrow(ShapeError);
    expect(() => attentionNaive(gpu, gpu.zeros([5, 24]), dims)).toThrow(ShapeError);
    expect(() => attentionNaive(gpu, gpu.zeros([6, 24], 'i32'), dims)).toThrow(DTypeError);
    expect(() => attentionNaive(gpu, good, { ...dims, seq: 0 })).toThrow(ShapeError);
    expect(() => attentionNaive(gpu, gpu.zeros([1, 3 * 132]), { batch: 1, seq: 1, heads: 1 })).toThrow(ShapeError);
    const { out, lse } = attentionNaive(gpu, good, dims);
    expect(() => attentionNaiveBackward(gpu, good, out, gpu.zeros([6, 7]), lse, dims)).toThrow(ShapeError);
    expect(() => attentionNaiveBackward(gpu, good, out, out, gpu.zeros([5]), dims)).toThrow(ShapeError);
    expect(() => attentionNaiveBackward(gpu, good, out, gpu.zeros([6, 8], 'u32'), lse, dims)).toThrow(DTypeError);
    gpu.release(good, out, lse);
  });
});
