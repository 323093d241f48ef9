/**
 * GPU timing. With the 'timestamp-query' feature every compute pass writes begin/end timestamps; the
 * measured time is the span from the first begin to the last end (so gaps between passes count, as they do
 * for a real step). Without it we fall back to wall-clock from the first dispatch to onSubmittedWorkDone,
 * which includes submission overhead, and label the result so.
 */
export type TimingSource = 'gpu-timestamps' | 'wall-clock';

export interface Timing {
  ms: number;
  passes: number;
  source: TimingSource;
}

const CAPACITY = 2048; // passes per timing window: two queries each, and WebGPU caps a query set at 4096

export class PassTimer {
  private querySet?: GPUQuerySet;
  private resolveBuf?: GPUBuffer;
  private next = 0;
  active = false;
  private wallStart = 0;

  private readonly device: GPUDevice;
  readonly source: TimingSource;
  constructor(device: GPUDevice, source: TimingSource) {
    this.device = device;
    this.source = source;
  }

  begin(): void {
    this.active = true;
    this.next = 0;
    this.wallStart = performance.now();
  }

  /** timestampWrites for the next pass, or undefined when not timing or out of slots. */
  passWrites(): GPUComputePassTimestampWrites | undefined {
    if (!this.active || this.source !== 'gpu-timestamps' || this.next >= CAPACITY) return undefined;
    this.querySet ??= this.device.createQuerySet({ type: 'timestamp', count: CAPACITY * 2 });
    const i = this.next++;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  get passesRecorded(): number {
    return this.next;
  }

  /** Encodes the query resolve; call before submitting the last command buffer of the window. */
  encodeResolve(encoder: GPUCommandEncoder): GPUBuffer | undefined {
    if (this.source !== 'gpu-timestamps' || this.next === 0 || !this.querySet) return undefined;
    const bytes = this.next * 16;
    this.resolveBuf ??= this.device.createBuffer({
      size: CAPACITY * 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, this.next * 2, this.resolveBuf, 0);
    encoder.copyBufferToBuffer(this.resolveBuf, 0, staging, 0, bytes);
    return staging;
  }

  async finish(staging: GPUBuffer | undefined, passes: number): Promise<Timing> {
    this.active = false;
    if (!staging) return { ms: performance.now() - this.wallStart, passes, source: 'wall-clock' };
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigInt64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    let first = t[0];
    let last = t[1];
    for (let i = 0; i < passes; i++) {
      if (t[2 * i] < first) first = t[2 * i];
      if (t[2 * i + 1] > last) last = t[2 * i + 1];
    }
    return { ms: Number(last - first) / 1e6, passes, source: 'gpu-timestamps' };
  }
}
