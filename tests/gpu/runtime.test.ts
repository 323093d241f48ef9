import { describe, expect, it } from 'vitest';
import { acquireGpuSource } from '../../src/gpu/acquire.ts';
import { bucketSize, BufferPool } from '../../src/gpu/buffer-pool.ts';
import {
  DeviceLostError,
  DTypeError,
  Gpu,
  GpuValidationError,
  LimitError,
  ShapeError,
  WebGpuUnavailableError,
} from '../../src/gpu/index.ts';
import { packParams } from '../../src/gpu/params.ts';
import { gelu, geluBackward } from '../../src/ops/gelu.ts';
import { testGpu } from '../gpu-fixture.ts';

describe('GPU runtime', () => {
  it('describes the adapter (Node: Dawn on a CPU Vulkan driver → software)', async () => {
    const gpu = await testGpu();
    expect(gpu.adapter.runtime).toBe('dawn');
    expect(gpu.adapter.isSoftware).toBe(true);
    expect(gpu.adapter.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    expect(gpu.limits.maxStorageBuffersPerShaderStage).toBe(gpu.adapter.limits.maxStorageBuffersPerShaderStage);
  });

  it('round-trips f32/i32/u32 tensors exactly', async () => {
    const gpu = await testGpu();
    const f = Float32Array.from([1.5, -2.25, 3e-38, 7]);
    const i = Int32Array.from([-1, 0, 2147483647, -2147483648]);
    expect([...(await gpu.read(gpu.upload(f, [2, 2])))]).toEqual([...f]);
    expect([...(await gpu.read(gpu.upload(i, [4])))]).toEqual([...i]);
    expect((await gpu.read(gpu.upload([1, 2, 3], [3], 'u32'))) instanceof Uint32Array).toBe(true);
    expect([...(await gpu.read(gpu.zeros([5])))]).toEqual([0, 0, 0, 0, 0]);
  });

  it('buffer pool reuses released buffers by size bucket', async () => {
    const gpu = await testGpu();
    const pool = new BufferPool(gpu.device);
    const usage = GPUBufferUsage.STORAGE;
    const a = pool.acquire(1000, usage);
    pool.release(a);
    const b = pool.acquire(1020, usage); // same 1024-byte bucket
    expect(b).toBe(a);
    expect(pool.stats).toMatchObject({ created: 1, reused: 1, liveBytes: 1024 });
    pool.release(b);
    expect(() => pool.release(b)).toThrow(/twice/);
    expect(bucketSize(1)).toBe(16);
    expect(bucketSize(3 << 20)).toBeGreaterThanOrEqual(3 << 20);
    expect(bucketSize(3 << 20)).toBeLessThanOrEqual((3 << 20) * 1.125);
  });

  it('pipeline cache compiles once per (shader, entry, constants)', async () => {
    const gpu = await testGpu();
    const x = gpu.upload(new Float32Array(64), [64]);
    gelu(gpu, x);
    const n = gpu.pipelines.compiled;
    gelu(gpu, x);
    geluBackward(gpu, x, x);
    expect(gpu.pipelines.compiled).toBe(n + 1);
    await gpu.sync();
  });

  it('times GPU work with timestamp queries when the adapter has them', async () => {
    const gpu = await testGpu();
    const x = gpu.upload(new Float32Array(1 << 18).fill(0.5), [1 << 18]);
    const t = await gpu.time(() => {
      for (let i = 0; i < 4; i++) gpu.release(gelu(gpu, x));
    });
    expect(t.source).toBe(gpu.device.features.has('timestamp-query') ? 'gpu-timestamps' : 'wall-clock');
    expect(t.passes).toBe(t.source === 'gpu-timestamps' ? 4 : 0);
    expect(t.ms).toBeGreaterThan(0);
    expect(t.ms).toBeLessThan(10_000);
  });

  it('packs uniform params as 4-byte scalars padded to 16 bytes', () => {
    const buf = packParams([
      ['u32', 7],
      ['f32', 0.5],
      ['i32', -3],
    ]);
    expect(buf.byteLength).toBe(16);
    const v = new DataView(buf);
    expect([v.getUint32(0, true), v.getFloat32(4, true), v.getInt32(8, true)]).toEqual([7, 0.5, -3]);
    expect(() => packParams([['u32', -1]])).toThrow(RangeError);
  });
});

describe('GPU runtime: bad input gets a typed error', () => {
  it('wrong sizes, shapes and dtypes', async () => {
    const gpu = await testGpu();
    expect(() => gpu.upload(new Float32Array(5), [2, 2])).toThrow(ShapeError);
    expect(() => gpu.empty([0, 3])).toThrow(ShapeError);
    expect(() => gpu.empty([2.5])).toThrow(ShapeError);
    const ids = gpu.upload(Int32Array.from([1, 2]), [2]);
    expect(() => gelu(gpu, ids)).toThrow(DTypeError);
    const x = gpu.upload(new Float32Array(4), [4]);
    expect(() => geluBackward(gpu, x, gpu.upload(new Float32Array(3), [3]))).toThrow(ShapeError);
    expect(() => gpu.write(x, new Float32Array(3))).toThrow(ShapeError);
  });

  it('sizes over the device limits', async () => {
    const gpu = await testGpu();
    const tooMany = gpu.limits.maxStorageBufferBindingSize / 4 + 1;
    expect(() => gpu.empty([tooMany])).toThrow(LimitError);
    const x = gpu.upload(new Float32Array(4), [4]);
    const max = gpu.limits.maxComputeWorkgroupsPerDimension;
    expect(() => gpu.dispatch({ shader: 'x', entry: 'forward', buffers: { 1: x }, workgroups: [max + 1] })).toThrow(
      LimitError,
    );
  });

  it('a broken shader surfaces as GpuValidationError, and the device keeps working', async () => {
    const gpu = await Gpu.create();
    const x = gpu.upload(new Float32Array(4), [4]);
    gpu.dispatch({
      shader: '@compute @workgroup_size(1) fn main() { let a: u32 = 1.5; }',
      entry: 'main',
      buffers: {},
      workgroups: [1],
    });
    await expect(gpu.sync()).rejects.toThrow(GpuValidationError);
    expect([...(await gpu.read(gelu(gpu, x)))]).toEqual([0, 0, 0, 0]);
    gpu.destroy();
  });

  it('a lost device: listeners are told and every later call throws DeviceLostError', async () => {
    const gpu = await Gpu.create();
    const x = gpu.upload(new Float32Array(4), [4]);
    const told = new Promise<string>((resolve) => gpu.onLost(resolve));
    gpu.destroy();
    await told;
    expect(gpu.isLost).toBe(true);
    expect(() => gelu(gpu, x)).toThrow(DeviceLostError);
    await expect(gpu.read(x)).rejects.toThrow(DeviceLostError);
  });

  it('no WebGPU in a browser: a typed error with advice (browser, flag)', async () => {
    const g = globalThis as Record<string, unknown>;
    const saved = { window: g.window, document: g.document };
    g.window = {};
    g.document = {};
    const nav = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true });
    try {
      const err = await acquireGpuSource().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WebGpuUnavailableError);
      expect((err as WebGpuUnavailableError).advice).toMatch(/Chrome/);
      expect((err as WebGpuUnavailableError).advice).toMatch(/enable-unsafe-webgpu/);
    } finally {
      g.window = saved.window;
      g.document = saved.document;
      if (nav) Object.defineProperty(globalThis, 'navigator', nav);
    }
  });
});

describe('kernels on the weakest conforming device', () => {
  it('every op check passes with WebGPU default limits (16 KiB workgroup storage, 8 storage buffers)', async () => {
    const { runSelfTest, OP_CHECKS } = await import('../../src/ops/selftest.ts');
    const { describe: describeComparison } = await import('../../src/ops/compare.ts');
    const gpu = await Gpu.create({ defaultLimits: true });
    expect(gpu.limits.maxComputeWorkgroupStorageSize).toBe(16384);
    expect(gpu.limits.maxStorageBuffersPerShaderStage).toBe(8);
    const reports = await runSelfTest(gpu, 'small');
    expect(reports.map((r) => r.op)).toEqual(OP_CHECKS.map(([op]) => op));
    const problems = reports.flatMap((r) =>
      r.error ? [`${r.op}: ${r.error}`] : r.results.filter((c) => !c.pass).map(describeComparison),
    );
    expect(problems.join('\n')).toBe('');
    expect(reports.every((r) => r.results.length > 0)).toBe(true);
    gpu.destroy();
  });
});
