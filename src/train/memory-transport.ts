import {
  frameBytes,
  Mailbox,
  TransportError,
  type Frame,
  type FrameKind,
  type ReceiveOptions,
  type Transport,
  type TransportStats,
} from './transport.ts';

/** A home-connection-like link: bandwidth in bits per second, one-way latency in milliseconds. */
export interface LinkShape {
  bitsPerSecond: number;
  latencyMs: number;
}

/**
 * In-process network of endpoints. With a link shape, each directed link sends one frame at a time at its
 * bandwidth (a frame occupies the link for bytes·8/bandwidth) and delivers it `latencyMs` later, like a
 * serialised TCP/SCTP stream; send() resolves when the link has taken the last byte (backpressure).
 */
export class InMemoryNetwork {
  private readonly boxes = new Map<string, Mailbox>();
  private readonly busyUntil = new Map<string, number>();
  private readonly shape?: (from: string, to: string) => LinkShape | undefined;

  constructor(shape?: (from: string, to: string) => LinkShape | undefined) {
    this.shape = shape;
  }

  endpoint(id: string): Transport {
    if (this.boxes.has(id)) throw new TransportError(`endpoint ${id} already exists`);
    const box = new Mailbox();
    this.boxes.set(id, box);
    const stats: TransportStats = { bytesSent: 0, bytesReceived: 0, framesSent: 0, framesReceived: 0 };
    const net = this;
    let closed = false;
    return {
      id,
      stats,
      async send(to: string, frame: Frame): Promise<void> {
        if (closed) throw new TransportError(`${id}: send on a closed transport`);
        const dest = net.boxes.get(to);
        if (!dest) throw new TransportError(`${id}: no endpoint ${to}`);
        const bytes = frameBytes(frame);
        stats.bytesSent += bytes;
        stats.framesSent++;
        const deliver = () => dest.put(frame);
        const link = net.shape?.(id, to);
        if (!link) {
          deliver();
          return;
        }
        const key = `${id}->${to}`;
        const now = performance.now();
        const start = Math.max(now, net.busyUntil.get(key) ?? 0);
        const done = start + (bytes * 8 * 1000) / link.bitsPerSecond;
        net.busyUntil.set(key, done);
        setTimeout(deliver, done + link.latencyMs - now);
        await new Promise((r) => setTimeout(r, done - now));
      },
      async receive(step: number, micro: number, kind: FrameKind, opts: ReceiveOptions = {}): Promise<Frame> {
        const f = await box.take(step, micro, kind, opts.timeoutMs ?? 120_000, id, opts.signal, opts.forgetBefore);
        stats.bytesReceived += frameBytes(f);
        stats.framesReceived++;
        return f;
      },
      close(): void {
        closed = true;
        if (net.boxes.get(id) === box) net.boxes.delete(id);
        box.close();
      },
    };
  }
}
