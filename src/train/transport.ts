/**
 * How stages talk: a Transport delivers frames between stage workers. The in-memory transport below runs a
 * whole pipeline in one process (with optional link shaping); the network layer implements the same
 * interface over libp2p streams (`/tessera/tensor/1.0.0`).
 */
import { TesseraError } from '../errors.ts';

/**
 * act: activations forward; grad: their gradients backward; gradsync: a replica's summed gradients (all-reduce
 * within a stage); norm: a stage's squared gradient norm (synchronous global clipping, one float);
 * audit: a copy of an act frame sent to a sibling of its receiver, which recomputes the forward to check it;
 * auditlist: the micro-batches a sender duplicated to this replica in a step (float32 ids, maybe none).
 */
export const FRAME_KINDS = ['act', 'grad', 'gradsync', 'norm', 'audit', 'auditlist'] as const;
export type FrameKind = (typeof FRAME_KINDS)[number];

export interface Frame {
  model: string;
  /** Sender's stage and replica. */
  fromStage: number;
  fromReplica: number;
  step: number;
  /** Micro-batch index (for 'gradsync': the sending replica; for 'norm': the sending stage). */
  micro: number;
  kind: FrameKind;
  shape: [number, number];
  codec: string;
  payload: Uint8Array;
  /** Token ids of the micro-batch: every stage gets them (codecs rebuild from them, the last stage's loss). */
  ids?: Int32Array;
}

export interface TransportStats {
  bytesSent: number;
  bytesReceived: number;
  framesSent: number;
  framesReceived: number;
}

export interface Transport {
  readonly id: string;
  readonly stats: TransportStats;
  /** Sends a frame; resolves once the link has accepted all of it (backpressure). */
  send(to: string, frame: Frame): Promise<void>;
  /** Resolves with the frame of (step, micro, kind) addressed to this endpoint; rejects after timeoutMs or on abort. */
  receive(step: number, micro: number, kind: FrameKind, opts?: ReceiveOptions): Promise<Frame>;
  close(): void;
}

export interface ReceiveOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Steps before this one are finished at the receiver: their frames and replay records may go (default step − 1). */
  forgetBefore?: number;
}

/** A frame that did not arrive or cannot be used; subclasses say which with their own `code`. */
export class TransportError extends TesseraError {
  constructor(message: string, code = 'transport') {
    super(code, message);
  }
}

/** Approximate bytes a frame occupies on the wire: payload, ids and a JSON-sized header. */
export function frameBytes(f: Frame): number {
  return f.payload.byteLength + (f.ids?.byteLength ?? 0) + 128;
}

export function frameKey(step: number, micro: number, kind: FrameKind): string {
  return `${step}:${micro}:${kind}`;
}

/** A mailbox of frames keyed by (step, micro, kind); a replayed frame for a key already taken is ignored. */
export class Mailbox {
  private readonly frames = new Map<string, Frame>();
  private readonly waiters = new Map<string, (f: Frame) => void>();
  private readonly taken = new Set<string>();

  put(f: Frame): boolean {
    const key = frameKey(f.step, f.micro, f.kind);
    if (this.taken.has(key) || this.frames.has(key)) return false;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      this.taken.add(key);
      w(f);
    } else this.frames.set(key, f);
    return true;
  }

  take(
    step: number,
    micro: number,
    kind: FrameKind,
    timeoutMs: number,
    who: string,
    signal?: AbortSignal,
    forgetBefore = step - 1,
  ): Promise<Frame> {
    this.forgetBefore(forgetBefore);
    const key = frameKey(step, micro, kind);
    const ready = this.frames.get(key);
    if (ready) {
      this.frames.delete(key);
      this.taken.add(key);
      return Promise.resolve(ready);
    }
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(key);
        reject(new TransportError(`${who}: no ${kind} frame for step ${step} micro-batch ${micro}: ${why}`));
      };
      const onAbort = () => fail(`aborted (${String(signal?.reason ?? 'no reason')})`);
      const timer = setTimeout(() => fail(`nothing within ${timeoutMs} ms`), timeoutMs);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(key, (f) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(f);
      });
    });
  }

  /** Drops frames and replay records of steps before `step` (finished or abandoned), bounding memory. */
  forgetBefore(step: number): void {
    for (const k of this.taken) if (Number(k.split(':')[0]) < step) this.taken.delete(k);
    for (const k of this.frames.keys()) if (Number(k.split(':')[0]) < step) this.frames.delete(k);
  }
}
