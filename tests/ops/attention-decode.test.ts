import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError, type Gpu } from '../../src/gpu/index.ts';
import { attention } from '../../src/ops/attention.ts';
import { ATTENTION_TOL } from '../../src/ops/attention.check.ts';
import { attentionRef } from '../../src/ops/attention.ref.ts';
import { attentionDecode, attentionDecodeFlops, chooseDecodePlan, kvAppend } from '../../src/ops/attention-decode.ts';
import { attentionDecodeInputs, checkAttentionDecode } from '../../src/ops/attention-decode.check.ts';
import { attentionDecodeRef } from '../../src/ops/attention-decode.ref.ts';
import { compare } from '../../src/ops/compare.ts';
import { Rng } from '../../src/ops/rng.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

/** qkv rows [L, 3C] → cache rows k | v [L, 2C]. */
function kvOf(qkv: ArrayLike<number>, L: number, C: number): Float64Array {
  const kv = new Float64Array(L * 2 * C);
  for (let j = 0; j < L; j++) for (let c = 0; c < 2 * C; c++) kv[j * 2 * C + c] = qkv[j * 3 * C + C + c];
  return kv;
}

describe('attentionDecode', () => {
  it('reference equals full causal attention on the last t rows', () => {
    const [H, D, L, t] = [2, 4, 11, 3];
    const C = H * D;
    const qkv = new Rng(1).f32(L * 3 * C, -2, 2);
    const full = attentionRef(qkv, { batch: 1, seq: L, heads: H });
    const past = L - t;
    const r = attentionDecodeRef(kvOf(qkv, past, C), qkv.subarray(past * 3 * C), { heads: H, past, channels: C });
    for (let i = 0; i < t * C; i++) expect(r.out[i]).toBeCloseTo(full.out[past * C + i], 12);
    for (let h = 0; h < H; h++)
      for (let i = 0; i < t; i++) expect(r.lse[h * t + i]).toBeCloseTo(full.lse[h * L + past + i], 12);
    expect(Array.from(r.kv)).toEqual(Array.from(kvOf(qkv, L, C)));
  });

  it('WGSL append and attention match the float64 reference', async () => {
    expectAllPass(await checkAttentionDecode(await testGpu(), 'full'));
  });

  it('chunked prefill then token-by-token decode matches the training kernel on the whole sequence', async () => {
    const gpu = await testGpu();
    const [H, D, L] = [2, 8, 23];
    const C = H * D;
    const qkv = new Rng(4).f32(L * 3 * C, -2, 2);
    const whole = attention(gpu, gpu.upload(qkv, [L, 3 * C]), { batch: 1, seq: L, heads: H });
    const want = await gpu.read(whole.out);
    const kv = gpu.zeros([32, 2 * C]);
    const got = new Float32Array(L * C);
    let past = 0;
    for (const t of [9, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1]) {
      const q = gpu.upload(qkv.subarray(past * 3 * C, (past + t) * 3 * C), [t, 3 * C]);
      kvAppend(gpu, q, kv, { heads: H, past });
      const { out, lse } = attentionDecode(gpu, q, kv, { heads: H, past });
      got.set(await gpu.read(out), past * C);
      gpu.release(q, out, lse);
      past += t;
    }
    expect(past).toBe(L);
    const c = compare('decode vs attention', got, want, ATTENTION_TOL);
    expect(c.pass, `max err ${c.maxAbsErr}`).toBe(true);
  });

  it('is deterministic: reruns are bit-identical', async () => {
    const gpu = await testGpu();
    const { pastKv, qkv, C } = attentionDecodeInputs([3, 50, 4, 8], 9);
    const kv = gpu.zeros([54, 2 * C]);
    gpu.write(
      kv,
      Float32Array.from({ length: 54 * 2 * C }, (_, i) => pastKv[i] ?? 0),
    );
    const q = gpu.upload(qkv, [4, 3 * C]);
    kvAppend(gpu, q, kv, { heads: 3, past: 50 });
    const run = async () => {
      const { out, lse } = attentionDecode(gpu, q, kv, { heads: 3, past: 50 }, { keysPerSplit: 11 });
      const r = [await gpu.read(out), await gpu.read(lse)];
      gpu.release(out, lse);
      return r;
    };
    const [a, b] = [await run(), await run()];
    for (let i = 0; i < 2; i++) expect(Buffer.from(b[i].buffer).equals(Buffer.from(a[i].buffer))).toBe(true);
    gpu.release(q, kv);
  });

  it('plans splits from the shape and the device limits', async () => {
    const gpu = await testGpu();
    const fake = (isSoftware: boolean, binding = 1 << 30) =>
      ({
        adapter: { ...gpu.adapter, isSoftware },
        limits: {
          maxComputeInvocationsPerWorkgroup: 256,
          maxComputeWorkgroupSizeX: 256,
          maxStorageBufferBindingSize: binding,
          maxBufferSize: binding,
        },
      }) as unknown as Gpu;
    // One decode row over a long cache: split along the keys; a long prefill chunk: rows suffice.
    const decode = chooseDecodePlan(fake(false), 1, { heads: 12, past: 4095, headDim: 64 });
    expect(decode.splits).toBe(128);
    expect(decode.keysPerSplit).toBe(32);
    expect(chooseDecodePlan(fake(false), 1024, { heads: 12, past: 0, headDim: 64 }).splits).toBe(1);
    expect(chooseDecodePlan(fake(true), 1, { heads: 4, past: 1023, headDim: 64 }).splits).toBe(16);
    // Short caches are not split below 32 keys.
    expect(chooseDecodePlan(fake(false), 1, { heads: 1, past: 40, headDim: 64 }).splits).toBe(1);
    // The partials must fit one storage binding: 16 KiB holds 4 splits of 16 heads × 64 floats.
    const tight = chooseDecodePlan(fake(false, 16384), 1, { heads: 16, past: 4095, headDim: 64 });
    expect(tight.splits).toBe(4);
    expect(tight.splits * tight.keysPerSplit).toBeGreaterThanOrEqual(4096);
    expect(decode.workgroup).toBe(64);
    expect(chooseDecodePlan(fake(true), 1, { heads: 1, past: 0, headDim: 8 }).workgroup).toBe(16);
  });

  it('rejects bad shapes and dtypes with typed errors', async () => {
    const gpu = await testGpu();
    const kv = gpu.zeros([8, 16]);
    const dims = { heads: 2, past: 3 };
    expect(() => attentionDecode(gpu, gpu.zeros([2, 20]), kv, dims)).toThrow(ShapeError); // not 3·C
    expect(() => attentionDecode(gpu, gpu.zeros([2, 24]), gpu.zeros([8, 12]), dims)).toThrow(ShapeError); // kv not 2·C
    expect(() => attentionDecode(gpu, gpu.zeros([6, 24]), kv, dims)).toThrow(/exceed the cache/); // 3 + 6 > 8
    expect(() => kvAppend(gpu, gpu.zeros([6, 24]), kv, dims)).toThrow(ShapeError);
    expect(() => attentionDecode(gpu, gpu.zeros([2, 24], 'i32'), kv, dims)).toThrow(DTypeError);
    expect(() => attentionDecode(gpu, gpu.zeros([2, 24]), kv, { heads: 2, past: -1 })).toThrow(ShapeError);
    expect(() => attentionDecode(gpu, gpu.zeros([2, 24]), kv, { heads: 0, past: 0 })).toThrow(ShapeError);
    expect(() => attentionDecode(gpu, gpu.zeros([1, 3 * 132]), gpu.zeros([2, 264]), { heads: 1, past: 0 })).toThrow(
      ShapeError,
    ); // D > 128
    expect(() => attentionDecode(gpu, gpu.zeros([2, 24]), kv, dims, { keysPerSplit: 0 })).toThrow(ShapeError);
  });

  it('counts FLOPs like attentionFlops', () => {
    // past 0: the causal pairs of a sequence of t; otherwise every new row also sees all past rows.
    expect(attentionDecodeFlops(4, 0, 8)).toBe(10 * 4 * 8);
    expect(attentionDecodeFlops(1, 9, 8)).toBe(10 * 4 * 8);
  });
});
