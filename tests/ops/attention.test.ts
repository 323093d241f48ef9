import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { attention, attentionBackward, attentionFlops } from '../../src/ops/attention.ts';
import { attentionInputs, attentionMemory, checkAttention } from '../../src/ops/attention.check.ts';
import { attentionBackwardRef, attentionRef } from '../../src/ops/attention.ref.ts';
import { checkGradient, dot, projection } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('attention', () => {
  it('reference backward matches central finite differences', () => {
    for (const [B, T, H, D] of [
      [1, 1, 1, 3],
      [2, 5, 2, 3],
      [1, 7, 1, 4],
    ]) {
      const dims = { batch: B, seq: T, heads: H };
      const { qkv } = attentionInputs([B, T, H, D], 1);
      const x = Float64Array.from(qkv);
      const w = projection(B * T * H * D, 3);
      const analytic = attentionBackwardRef(x, w, dims);
      expectAllPass([
        checkGradient(
          `attention dqkv B=${B} T=${T} H=${H} D=${D}`,
          (v) => dot(attentionRef(v, dims).out, w),
          x,
          analytic,
          64,
        ),
      ]);
    }
  });

  it('reference forward is causal and its lse normalises each row', () => {
    const dims = { batch: 1, seq: 6, heads: 2 };
    const { qkv } = attentionInputs([1, 6, 2, 4], 2);
    const a = attentionRef(qkv, dims);
    // Changing the last token's k and v must not change any earlier output row.
    const changed = Float64Array.from(qkv);
    for (let c = 8; c < 24; c++) changed[5 * 24 + c] += 1;
    const b = attentionRef(changed, dims);
    expect(Array.from(b.out.subarray(0, 5 * 8))).toEqual(Array.from(a.out.subarray(0, 5 * 8)));
    // Row 0 attends to key 0 only: out = v_0, lse = scaled q_0·k_0.
    expect(a.out[0]).toBeCloseTo(qkv[16], 12);
    const s00 = (qkv[0] * qkv[8] + qkv[1] * qkv[9] + qkv[2] * qkv[10] + qkv[3] * qkv[11]) / 2;
    expect(a.lse[0]).toBeCloseTo(s00, 12);
  });

  // ~2 s with a warm shader cache; lavapipe's first compile of these pipelines (Mesa caches them on disk)
  // takes minutes on a busy 2-core machine, hence the long timeout.
  it('WGSL forward and backward match the float64 reference', { timeout: 900_000 }, async () => {
    expectAllPass(await checkAttention(await testGpu(), 'full'));
  });

  it('is deterministic: reruns are bit-identical', async () => {
    const gpu = await testGpu();
    const { qkv, dout, dims } = attentionInputs([2, 45, 3, 8], 9);
    const q = gpu.upload(qkv, [90, 72]);
    const dt = gpu.upload(dout, [90, 24]);
    const run = async () => {
      const { out, lse } = attention(gpu, q, dims);
      const dqkv = attentionBackward(gpu, q, out, dt, lse, dims);
      const r = [await gpu.read(out), await gpu.read(lse), await gpu.read(dqkv)];
      gpu.release(out, lse, dqkv);
      return r;
    };
    const [a, b] = [await run(), await run()];
    for (let i = 0; i < 3; i++) expect(Buffer.from(b[i].buffer).equals(Buffer.from(a[i].buffer))).toBe(true);
    gpu.release(q, dt);
  });

  it('memory grows linearly in T (no T×T buffer)', { timeout: 300_000 }, async () => {
    const gpu = await testGpu();
    const small = await attentionMemory(gpu, { batch: 1, seq: 64, heads: 2, channels: 32 });
    const large = await attentionMemory(gpu, { batch: 1, seq: 512, heads: 2, channels: 32 });
    const bufferRatio = large.largestBuffer / small.largestBuffer;
    const peakRatio = large.peakBytes / small.peakBytes;
    expect(bufferRatio).toBeGreaterThan(6);
    expect(bufferRatio).toBeLessThan(10);
    expect(peakRatio).toBeGreaterThan(6);
    expect(peakRatio).toBeLessThan(10);
    // Everything allocated fits in ~4 copies of qkv; one T×T float matrix per head would be 1 MiB here.
    expect(large.peakBytes).toBeLessThan(4 * 512 * 96 * 4);
  });

  it('rejects bad shapes and dtypes with typed errors', async () => {
    const gpu = await testGpu();
    const dims = { batch: 2, seq: 3, heads: 2 };
    const good = gpu.zeros([6, 24]);
    expect(() => attention(gpu, gpu.zeros([6, 20]), dims)).toThrow(ShapeError); // 20 columns: not 3·C
    expect(() => attention(gpu, gpu.zeros([6, 18]), { ...dims, heads: 4 })).toThrow(ShapeError); // C = 6, 4 heads
    expect(() => attention(gpu, gpu.zeros([5, 24]), dims)).toThrow(ShapeError); // rows ≠ B·T
    expect(() => attention(gpu, gpu.zeros([6, 24, 1]), dims)).toThrow(ShapeError); // rank 3
    expect(() => attention(gpu, gpu.zeros([6, 24], 'i32'), dims)).toThrow(DTypeError);
    expect(() => attention(gpu, good, { batch: 2, seq: 3, heads: 0 })).toThrow(ShapeError);
    // D > 128
    expect(() => attention(gpu, gpu.zeros([1, 3 * 132]), { batch: 1, seq: 1, heads: 1 })).toThrow(ShapeError);
    const { out, lse } = attention(gpu, good, dims);
    expect(() => attentionBackward(gpu, good, out, gpu.zeros([6, 7]), lse, dims)).toThrow(ShapeError);
    expect(() => attentionBackward(gpu, good, out, out, gpu.zeros([5]), dims)).toThrow(ShapeError);
    expect(() => attentionBackward(gpu, good, out, gpu.zeros([6, 8], 'u32'), lse, dims)).toThrow(DTypeError);
  });

  it('counts causal FLOPs', () => {
    // T = 4: 10 (query, key ≤ query) pairs; forward 4·C per pair, backward 10·C.
    expect(attentionFlops({ batch: 2, seq: 4, heads: 2, channels: 8 })).toBe(2 * 10 * 4 * 8);
    expect(attentionFlops({ batch: 2, seq: 4, heads: 2, channels: 8 }, true)).toBe(2 * 10 * 10 * 8);
  });
});
