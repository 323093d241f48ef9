import { describe, expect, it } from 'vitest';
import { ArgumentError, DTypeError, ShapeError } from '../../src/gpu/index.ts';
import { checkMatmul } from '../../src/ops/matmul.check.ts';
import {
  biasGrad,
  chooseMatmulVariant,
  linearBackward,
  linearForward,
  matmul,
  MATMUL_VARIANTS,
  matmulFlops,
} from '../../src/ops/matmul.ts';
import { linearBackwardRef, linearForwardRef, matmulRef } from '../../src/ops/matmul.ref.ts';
import { Rng } from '../../src/ops/rng.ts';
import { checkGradient, dot, projection } from '../finite-diff.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

describe('matmul', () => {
  it('reference linear backward matches central finite differences (dx, dW, db)', () => {
    const [M, K, N] = [3, 5, 4];
    const rng = new Rng(3);
    const x = Float64Array.from({ length: M * K }, () => rng.normal());
    const w = Float64Array.from({ length: K * N }, () => rng.normal());
    const b = Float64Array.from({ length: N }, () => rng.normal());
    // L = Σ W_proj ∘ Y, so dL/dY = W_proj.
    const proj = projection(M * N, 11);
    const { dx, dw, db } = linearBackwardRef(x, w, proj, M, K, N);
    expectAllPass([
      checkGradient('linear dx', (v) => dot(linearForwardRef(v, w, b, M, K, N), proj), x, dx),
      checkGradient('linear dW', (v) => dot(linearForwardRef(x, v, b, M, K, N), proj), w, dw),
      checkGradient('linear db', (v) => dot(linearForwardRef(x, w, v, M, K, N), proj), b, db),
    ]);
  });

  it('reference transposes agree with explicitly transposed operands', () => {
    const [M, N, K] = [3, 4, 5];
    const rng = new Rng(4);
    const a = Float64Array.from({ length: M * K }, () => rng.normal());
    const b = Float64Array.from({ length: K * N }, () => rng.normal());
    const aT = new Float64Array(M * K);
    const bT = new Float64Array(K * N);
    for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) aT[k * M + m] = a[m * K + k];
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) bT[n * K + k] = b[k * N + n];
    const want = matmulRef(a, b, M, N, K);
    expect([...matmulRef(aT, bT, M, N, K, { transA: true, transB: true })]).toEqual([...want]);
    expect(want[1 * N + 2]).toBeCloseTo(
      dot(
        a.subarray(K, 2 * K),
        Array.from({ length: K }, (_, k) => b[k * N + 2]),
      ),
      12,
    );
  });

  it('WGSL kernels (every variant, transpose, bias, accumulate) match the float64 reference', async () => {
    expectAllPass(await checkMatmul(await testGpu(), 'full'));
  });

  it('is deterministic: every variant gives bit-identical results on repeat', async () => {
    const gpu = await testGpu();
    const rng = new Rng(8);
    const [M, N, K] = [70, 45, 130];
    const a = gpu.upload(rng.f32(M * K), [K, M]);
    const b = gpu.upload(rng.f32(K * N), [K, N]);
    const bias = gpu.upload(rng.f32(N), [N]);
    for (const variant of MATMUL_VARIANTS) {
      const runs: Float32Array[] = [];
      for (let r = 0; r < 2; r++) {
        const c = matmul(gpu, a, b, { transA: true, bias, variant });
        runs.push((await gpu.read(c)) as Float32Array);
        gpu.release(c);
      }
      expect(runs[0]).toEqual(runs[1]);
    }
    const dy = gpu.upload(rng.f32(M * N), [M, N]);
    const db1 = await gpu.read(biasGrad(gpu, dy));
    expect(await gpu.read(biasGrad(gpu, dy))).toEqual(db1);
    gpu.release(a, b, bias, dy);
  });

  it('chooses the register kernel on CPU drivers; counts 2MNK flops', async () => {
    const gpu = await testGpu();
    expect(gpu.adapter.isSoftware).toBe(true);
    expect(chooseMatmulVariant(gpu, 512, 1024, 256, false, false)).toBe('register');
    expect(matmulFlops(512, 1024, 256)).toBe(2 * 512 * 1024 * 256);
  });

  it('rejects bad shapes, dtypes and options with typed errors', async () => {
    const gpu = await testGpu();
    const a = gpu.upload(new Float32Array(6), [2, 3]);
    const b = gpu.upload(new Float32Array(12), [3, 4]);
    const b43 = gpu.upload(new Float32Array(12), [4, 3]);
    const ai = gpu.upload(new Int32Array(6), [2, 3]);
    const v = gpu.upload(new Float32Array(3), [3]);
    const c = gpu.upload(new Float32Array(8), [2, 4]);
    expect(() => matmul(gpu, a, b43)).toThrow(ShapeError);
    expect(() => matmul(gpu, a, b, { transA: true })).toThrow(ShapeError);
    expect(() => matmul(gpu, a, b, { transB: true })).toThrow(ShapeError);
    expect(() => matmul(gpu, a, v)).toThrow(ShapeError);
    expect(() => matmul(gpu, ai, b)).toThrow(DTypeError);
    expect(() => matmul(gpu, a, b, { bias: v })).toThrow(ShapeError);
    expect(() => matmul(gpu, a, b, { bias: gpu.upload(new Int32Array(4), [4]) })).toThrow(DTypeError);
    expect(() => matmul(gpu, a, b, { accumulate: gpu.upload(new Float32Array(8), [4, 2]) })).toThrow(ShapeError);
    expect(() => matmul(gpu, c, gpu.upload(new Float32Array(16), [4, 4]), { accumulate: c })).toThrow(ArgumentError);
    expect(() => matmul(gpu, a, b, { variant: 'fast' as never })).toThrow(ArgumentError);
    expect(() => biasGrad(gpu, v)).toThrow(ShapeError);
    expect(() => biasGrad(gpu, ai)).toThrow(DTypeError);
    expect(() => linearForward(gpu, a, b43)).toThrow(ShapeError);
    expect(() => linearBackward(gpu, a, b, gpu.upload(new Float32Array(6), [2, 3]))).toThrow(ShapeError);
    expect(() =>
      linearBackward(gpu, a, b, c, { accumulate: { dw: gpu.upload(new Float32Array(12), [4, 3]) } }),
    ).toThrow(ShapeError);
    // Nothing was dispatched by the failed calls, so the device is still clean.
    await gpu.sync();
  });
});
