/**
 * How stages talk: a Transport delivers frames between stage workers. The in-memory transport
 * (memory-transport.ts) runs a whole pipeline in one process (with optional link shaping); the network layer
 * implements the same interface over libp2p streams (`/tessera/tensor/1.0.0`, src/net/net-transport.ts). The
 * kinds of frame are listed, with what each carries, in frame-kinds.ts.
 */
import { TesseraError } from '../errors.ts';
import type { FrameKind } from './frame-kinds.ts';

export type { FrameKind } from './frame-kinds.ts';

/**
 * Everything about a frame but its body: where it comes from, how it is addressed and how to read the body.
 * This is also the frame's wire header (src/net/frame-codec.ts adds only what is needed to read and verify the
 * body's bytes), so the two cannot drift apart.
 */
export interface FrameHead {
  model: string;
  /** Sender's stage and replica. */
  fromStage: number;
  fromReplica: number;
  step: number;
  /** What it names depends on the kind (FRAME_KIND_SPECS[kind].micro): a micro-batch, the sending replica or stage. */
  micro: number;
  kind: FrameKind;
  shape: [number, number];
  codec: string;
}

export interface Frame extends FrameHead {
  payload: Uint8Array;
  /** Token ids of the micro-batch: every stage gets them (codecs rebuild from them, the last stage's loss). */
  ids?: Int32Array;
}

/** The endpoint id of replica `replica` of stage `stage`: what a worker passes to send(). */
export function workerId(stage: number, replica: number): string {
  return `s${stage}r${replica}`;
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
  /** Sends a frame; resolves once the link has accepted all of it (backpressure); rejects for an unknown endpoint. */
  send(to: string, frame: Frame): Promise<void>;
  /**
   * Resolves with the frame of (step, micro, kind) addressed to this endpoint; a second frame for the same key
   * (a replay) is ignored. Rejects after timeoutMs, on abort, or when the transport closes.
   */
  receive(step: number, micro: number, kind: FrameKind, opts?: ReceiveOptions): Promise<Frame>;
  /** Ends the endpoint: pending and later receives reject. */
  close(): void;
}

export interface ReceiveOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Steps before this one are finished at the receiver: their frames and replay records may go (default step − 1). */
  forgetBefore?: number;
}

/**
 * A frame that did not arrive or cannot be used. `code`: 'receive-timeout', 'receive-aborted' (the receive's
 * signal), 'transport-closed' (the endpoint closed before the frame came), 'frame' (FrameError: refused), and
 * 'transport' for the rest (an unknown endpoint, a link that failed).
 */
export class TransportError extends TesseraError {
  constructor(message: string, code = 'transport') {
    super(code, message);
  }
}

/**
 * A frame the receiver refuses: undecodable, over the limits, not what its assignment expects, or malformed for its
 * kind.
 */
export class FrameError extends TransportError {
  /** Why the frame was refused, without the "frame refused:" prefix. */
  readonly reason: string;
  constructor(reason: string) {
    super(`frame refused: ${reason}`, 'frame');
    this.reason = reason;
  }
}

/** Approximate bytes a frame occupies on the wire: payload, ids and a JSON-sized header. */
export function frameBytes(f: Frame): number {
  return f.payload.byteLength + (f.ids?.byteLength ?? 0) + 128;
}

export function frameKey(step: number, micro: number, kind: FrameKind): string {
  return `${step}:${micro}:${kind}`;
}

interface Waiter {
  deliver: (f: Frame) => void;
  fail: (why: string, code: string) => void;
}

/** A mailbox of frames keyed by (step, micro, kind); a replayed frame for a key already taken is ignored. */
export class Mailbox {
  private readonly frames = new Map<string, Frame>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly taken = new Set<string>();
  private closed = false;

  /** Files a frame; false if it is a replay (its key is waiting or already taken) or the mailbox is closed. */
  put(f: Frame): boolean {
    const key = frameKey(f.step, f.micro, f.kind);
    if (this.closed || this.taken.has(key) || this.frames.has(key)) return false;
    const w = this.waiters.get(key);
    if (w) {
      this.waiters.delete(key);
      this.taken.add(key);
      w.deliver(f);
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
      const fail = (why: string, code: string) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(key);
        reject(new TransportError(`${who}: no ${kind} frame for step ${step} micro-batch ${micro}: ${why}`, code));
      };
      const onAbort = () => fail(`aborted (${String(signal?.reason ?? 'no reason')})`, 'receive-aborted');
      const timer = setTimeout(() => fail(`nothing within ${timeoutMs} ms`, 'receive-timeout'), timeoutMs);
      if (this.closed) return fail('transport closed', 'transport-closed');
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(key, {
        deliver: (f) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(f);
        },
        fail,
      });
    });
  }

  /** Rejects every pending take and refuses later ones; frames still here are dropped. */
  close(): void {
    this.closed = true;
    for (const w of [...this.waiters.values()]) w.fail('transport closed', 'transport-closed');
    this.frames.clear();
    this.taken.clear();
  }

  /** Drops frames and replay records of steps before `step` (finished or abandoned), bounding memory. */
  forgetBefore(step: number): void {
    for (const k of this.taken) if (Number(k.split(':')[0]) < step) this.taken.delete(k);
    for (const k of this.frames.keys()) if (Number(k.split(':')[0]) < step) this.frames.delete(k);
  }
}
