import { acquireGpuSource } from './acquire.ts';
import { summarizeAdapter, type AdapterSummary } from './adapter-info.ts';
import { BufferPool } from './buffer-pool.ts';
import { DeviceLostError, GpuValidationError, LimitError, ShapeError, WebGpuUnavailableError } from './errors.ts';
import { packParams, type Param } from './params.ts';
import { PipelineCache, type Constants } from './pipeline-cache.ts';
import { PassTimer, type Timing } from './timer.ts';
import { assertShape, numel, typedArrayFor, type DType, type Tensor } from './tensor.ts';

export interface Dispatch {
  /** WGSL source (imported from shaders/*.wgsl). */
  shader: string;
  entry: string;
  /** WGSL `override` constants (tile sizes, transpose flags, workgroup size). */
  constants?: Constants;
  /** Uniform parameters, bound at @binding(0). */
  params?: readonly Param[];
  /** Storage buffers by binding index (1, 2, …). */
  buffers: Record<number, Tensor | GPUBuffer>;
  workgroups: readonly [number, number?, number?];
  label?: string;
}

export type HostArray = Float32Array | Int32Array | Uint32Array;

export interface GpuOptions {
  /** 'high-performance' (default) picks a discrete GPU when there is one. */
  powerPreference?: GPUPowerPreference;
  /** Request WebGPU's default limits instead of the adapter's maximums. */
  defaultLimits?: boolean;
}

const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * One WebGPU device with everything the ops need: a buffer pool, a pipeline cache, batched dispatch
 * (all dispatches go into one command encoder until flush/read), GPU timing, and loud failure on
 * device loss or validation errors. Identical in the browser and in Node.
 */
export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly timer: PassTimer;
  private encoder?: GPUCommandEncoder;
  private pendingUniforms: GPUBuffer[] = [];
  private lostReason?: string;
  private readonly errors: string[] = [];
  private readonly lostListeners: Array<(reason: string) => void> = [];
  dispatches = 0;

  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;

  private constructor(device: GPUDevice, adapter: AdapterSummary) {
    this.device = device;
    this.adapter = adapter;
    this.pool = new BufferPool(device);
    this.pipelines = new PipelineCache(device);
    this.timer = new PassTimer(device, device.features.has('timestamp-query') ? 'gpu-timestamps' : 'wall-clock');
    void device.lost.then((info) => {
      this.lostReason = info.message || String(info.reason);
      for (const l of this.lostListeners) l(this.lostReason);
    });
    device.addEventListener('uncapturederror', (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      this.errors.push(msg);
      console.error(`[tessera/gpu] ${msg}`);
    });
  }

  /** Requests an adapter and device. `powerPreference` high-performance picks a discrete GPU when present. */
  static async create(opts: GpuOptions = {}): Promise<Gpu> {
    const { gpu, runtime } = await acquireGpuSource();
    const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
    if (!adapter) {
      throw new WebGpuUnavailableError(
        'WebGPU is present but no adapter was found.',
        runtime === 'browser'
          ? 'Your GPU or driver may be blocklisted: update the driver, or in Chrome enable ' +
              'chrome://flags/#enable-unsafe-webgpu.'
          : 'No Vulkan driver was found: install mesa-vulkan-drivers (lavapipe) or a GPU driver, or run `npm start`.',
      );
    }
    const summary = summarizeAdapter(adapter, runtime);
    // Ask for the adapter's full limits (the kernels read them and size their tiles to fit), or for
    // WebGPU's guaranteed defaults (16 KiB workgroup storage, 8 storage buffers per stage, …) to prove the
    // kernels work on the weakest conforming device.
    const requiredLimits: Record<string, number> = {};
    if (!opts.defaultLimits) for (const [k, v] of Object.entries(summary.limits)) requiredLimits[k] = v;
    const requiredFeatures: GPUFeatureName[] = [];
    if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query');
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'tessera' });
    return new Gpu(device, summary);
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  get isLost(): boolean {
    return this.lostReason !== undefined;
  }

  onLost(listener: (reason: string) => void): void {
    this.lostListeners.push(listener);
  }

  private assertUsable(): void {
    if (this.lostReason !== undefined) throw new DeviceLostError(this.lostReason);
  }

  private throwPendingErrors(): void {
    if (this.errors.length) {
      const all = this.errors.splice(0);
      throw new GpuValidationError(`WebGPU reported ${all.length} error(s): ${all.join(' | ')}`);
    }
  }

  // ---- tensors -------------------------------------------------------------------------------

  private checkBytes(bytes: number, what: string): void {
    const max = Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize);
    if (bytes > max) {
      throw new LimitError(`${what}: ${bytes} bytes exceeds this device's storage buffer limit of ${max} bytes`);
    }
  }

  /** An uninitialised tensor from the pool (contents are whatever the pooled buffer held). */
  empty(shape: readonly number[], dtype: DType = 'f32', label?: string): Tensor {
    this.assertUsable();
    assertShape(shape, label ?? 'tensor');
    const size = numel(shape);
    this.checkBytes(size * 4, label ?? `tensor [${shape.join(', ')}]`);
    return { buffer: this.pool.acquire(size * 4, STORAGE(), label), shape: [...shape], dtype, size };
  }

  /** A tensor filled with zeros (cleared on the GPU, in command order). */
  zeros(shape: readonly number[], dtype: DType = 'f32', label?: string): Tensor {
    const t = this.empty(shape, dtype, label);
    this.clear(t);
    return t;
  }

  /** Sets every element of t to zero, in command order. */
  clear(t: Tensor): void {
    this.commandEncoder().clearBuffer(t.buffer, 0, t.size * 4);
  }

  upload(data: HostArray | readonly number[], shape: readonly number[], dtype?: DType, label?: string): Tensor {
    const dt: DType = dtype ?? (data instanceof Int32Array ? 'i32' : data instanceof Uint32Array ? 'u32' : 'f32');
    const arr = Array.isArray(data) ? typedArrayFor(dt, new ArrayBuffer(data.length * 4)) : (data as HostArray);
    if (Array.isArray(data)) arr.set(data);
    if (arr.length !== numel(shape)) {
      throw new ShapeError(
        `upload: ${arr.length} values do not fill shape [${shape.join(', ')}] (${numel(shape)} elements)`,
      );
    }
    const t = this.empty(shape, dt, label);
    this.write(t, arr);
    return t;
  }

  /** Overwrites a tensor's contents. Pending dispatches are submitted first so the write lands in order. */
  write(t: Tensor, data: HostArray): void {
    this.assertUsable();
    if (data.length !== t.size) throw new ShapeError(`write: ${data.length} values for a tensor of ${t.size} elements`);
    this.flush();
    this.device.queue.writeBuffer(t.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  release(...tensors: Array<Tensor | undefined>): void {
    for (const t of tensors) if (t) this.pool.release(t.buffer);
  }

  /** Copies a tensor back to the host. */
  async read(t: Tensor): Promise<HostArray> {
    this.assertUsable();
    const bytes = t.size * 4;
    const staging = this.pool.acquire(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'staging');
    this.commandEncoder().copyBufferToBuffer(t.buffer, 0, staging, 0, bytes);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, bytes);
    } catch (e) {
      this.assertUsable();
      throw new GpuValidationError(`reading back ${t.dtype}[${t.shape.join(', ')}] failed: ${(e as Error).message}`);
    }
    const out = typedArrayFor(t.dtype, staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    this.pool.release(staging);
    this.throwPendingErrors();
    return out;
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    return (await this.read(t)) as Float32Array;
  }

  // ---- dispatch ------------------------------------------------------------------------------

  private commandEncoder(): GPUCommandEncoder {
    this.assertUsable();
    return (this.encoder ??= this.device.createCommandEncoder({ label: 'tessera' }));
  }

  dispatch(d: Dispatch): void {
    this.assertUsable();
    const [x, y = 1, z = 1] = d.workgroups;
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new LimitError(
        `${d.label ?? d.entry}: ${x}×${y}×${z} workgroups exceeds this device's ${maxWg} per dimension`,
      );
    }
    const storageCount = Object.keys(d.buffers).length;
    if (storageCount > this.limits.maxStorageBuffersPerShaderStage) {
      throw new LimitError(
        `${d.label ?? d.entry}: needs ${storageCount} storage buffers, device allows ` +
          `${this.limits.maxStorageBuffersPerShaderStage}`,
      );
    }
    if (x === 0 || y === 0 || z === 0) return;
    const pipeline = this.pipelines.get(d.shader, d.entry, d.constants, d.label);
    const entries: GPUBindGroupEntry[] = [];
    if (d.params) {
      const data = packParams(d.params);
      const ubuf = this.pool.acquire(data.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'params');
      // writeBuffer runs before the pending encoder is submitted, so each uniform buffer used in this
      // encoder must be distinct; they go back to the pool at flush.
      this.device.queue.writeBuffer(ubuf, 0, data);
      this.pendingUniforms.push(ubuf);
      entries.push({ binding: 0, resource: { buffer: ubuf, size: data.byteLength } });
    }
    for (const [binding, b] of Object.entries(d.buffers)) {
      const buffer = 'buffer' in b ? b.buffer : b;
      const size = 'buffer' in b ? Math.max(4, b.size * 4) : b.size;
      entries.push({ binding: Number(binding), resource: { buffer, size } });
    }
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.commandEncoder().beginComputePass({
      label: d.label ?? d.entry,
      timestampWrites: this.timer.passWrites(),
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    pass.end();
    this.dispatches++;
  }

  /**
   * Copies `count` elements (default: all of src) from src[srcOffset…] to dst[dstOffset…], in command order.
   * Offsets and counts are in elements.
   */
  copy(src: Tensor, dst: Tensor, opts: { srcOffset?: number; dstOffset?: number; count?: number } = {}): void {
    const { srcOffset = 0, dstOffset = 0, count = src.size - srcOffset } = opts;
    const ok = [srcOffset, dstOffset, count].every((v) => Number.isInteger(v) && v >= 0);
    if (!ok || srcOffset + count > src.size || dstOffset + count > dst.size) {
      throw new ShapeError(
        `copy: ${count} elements from [${srcOffset}] of ${src.size} into [${dstOffset}] of ${dst.size} is out ` +
          `of bounds`,
      );
    }
    if (count > 0)
      this.commandEncoder().copyBufferToBuffer(src.buffer, srcOffset * 4, dst.buffer, dstOffset * 4, count * 4);
  }

  /** Submits pending work. */
  flush(): void {
    if (!this.encoder) return;
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = undefined;
    for (const u of this.pendingUniforms) this.pool.release(u);
    this.pendingUniforms = [];
  }

  /** Submits and waits for all work to finish; throws if WebGPU reported errors meanwhile. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.assertUsable();
    this.throwPendingErrors();
  }

  /** Times the GPU work `fn` enqueues (GPU timestamps if available, else labelled wall-clock). */
  async time(fn: () => void | Promise<void>): Promise<Timing> {
    await this.sync();
    this.timer.begin();
    await fn();
    const passes = this.timer.passesRecorded;
    const staging = this.timer.encodeResolve(this.commandEncoder());
    await this.sync();
    return this.timer.finish(staging, passes);
  }

  destroy(): void {
    this.device.destroy();
  }
}

export type { Timing };
