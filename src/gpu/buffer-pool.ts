/**
 * Reuses GPU buffers by (usage, size bucket). Training allocates the same shapes every step, so after the
 * first step nearly every request is served from the pool. Sizes round up to a bucket (powers of two below
 * 1 MiB, then 1/8-octave steps) to bound waste at ~12%.
 */
export interface PoolStats {
  /** Bytes currently held by live (acquired) buffers. */
  liveBytes: number;
  /** Highest liveBytes seen since the last resetPeak(). */
  peakLiveBytes: number;
  /** Largest single buffer handed out since the last resetPeak(). */
  largestBuffer: number;
  /** Bytes of all buffers created (live + pooled). */
  allocatedBytes: number;
  created: number;
  reused: number;
}

export function bucketSize(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly sizes = new WeakMap<GPUBuffer, number>();
  readonly stats: PoolStats = {
    liveBytes: 0,
    peakLiveBytes: 0,
    largestBuffer: 0,
    allocatedBytes: 0,
    created: 0,
    reused: 0,
  };

  private readonly device: GPUDevice;
  constructor(device: GPUDevice) {
    this.device = device;
  }

  acquire(bytes: number, usage: GPUBufferUsageFlags, label?: string): GPUBuffer {
    const size = bucketSize(bytes);
    const key = `${usage}:${size}`;
    let buf = this.free.get(key)?.pop();
    if (buf) {
      this.stats.reused++;
    } else {
      buf = this.device.createBuffer({ size, usage, label });
      this.sizes.set(buf, size);
      this.stats.created++;
      this.stats.allocatedBytes += size;
    }
    this.stats.liveBytes += size;
    this.stats.peakLiveBytes = Math.max(this.stats.peakLiveBytes, this.stats.liveBytes);
    this.stats.largestBuffer = Math.max(this.stats.largestBuffer, size);
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) throw new Error('BufferPool.release: buffer does not belong to this pool');
    const key = `${buf.usage}:${size}`;
    const list = this.free.get(key) ?? [];
    if (list.includes(buf)) throw new Error('BufferPool.release: buffer released twice');
    list.push(buf);
    this.free.set(key, list);
    this.stats.liveBytes -= size;
  }

  resetPeak(): void {
    this.stats.peakLiveBytes = this.stats.liveBytes;
    this.stats.largestBuffer = 0;
  }

  /** Destroys pooled (not live) buffers, e.g. after a benchmark sweep. */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        this.stats.allocatedBytes -= this.sizes.get(b) ?? 0;
        b.destroy();
      }
    }
    this.free.clear();
  }
}
