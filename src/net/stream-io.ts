/**
 * Request/response messages over libp2p 3 streams, shared by the stage-transfer and sync protocols: a message
 * is a u32 big-endian length and that many bytes of UTF-8 JSON; bulk bytes follow as a plain run written in
 * ≤ 64 KiB chunks with backpressure (Chromium closes a data channel on messages over 256 KiB). Every read has a
 * byte limit, so a peer can never make the reader buffer more than the protocol allows.
 */
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { TesseraError } from '../errors.ts';
import { MAX_CHUNK_BYTES } from './net-transport.ts';

/** The stream broke, timed out, or carried something that is not a message of the protocol. */
export class WireError extends TesseraError {
  /** The stream broke or ended before the message was whole (the other side went away), not a malformed message. */
  readonly cutShort: boolean;
  constructor(message: string, options?: ErrorOptions & { cutShort?: boolean }) {
    super('wire', message, options);
    this.cutShort = options?.cutShort ?? false;
  }
}

type Chunk = { subarray(): Uint8Array };

/** Sees every chunk any StreamReader receives (wire-tap.ts; null: none). */
let readerTap: ((bytes: Uint8Array) => void) | null = null;
export function setReaderTap(tap: ((bytes: Uint8Array) => void) | null): void {
  readerTap = tap;
}

/**
 * Reads exact byte counts from a stream (chunks arrive in whatever sizes the transport chose). It listens to the
 * stream's events rather than iterating it: libp2p 3's iterator attaches its listeners only on the first
 * next(), so a remote close that happened before would never end it. Create the reader as soon as the stream
 * exists; the stream buffers whatever arrived before.
 */
export class StreamReader {
  private readonly stream: Stream;
  private chunks: Uint8Array[] = [];
  private queued = 0;
  private ended = false;
  private error?: Error;
  private wake?: () => void;
  /** Bytes received so far (for stats). */
  bytesRead = 0;

  constructor(stream: Stream) {
    this.stream = stream;
    stream.addEventListener('message', this.onMessage);
    stream.addEventListener('end', this.onEnd);
    stream.addEventListener('close', this.onClose);
    this.ended = stream.readableEnded;
  }

  private readonly onMessage = (e: Event) => {
    const bytes = (e as unknown as { data: Chunk }).data.subarray();
    readerTap?.(bytes);
    this.chunks.push(bytes);
    this.queued += bytes.length;
    this.bytesRead += bytes.length;
    this.wake?.();
  };

  private readonly onEnd = () => {
    this.ended = true;
    this.wake?.();
  };

  private readonly onClose = (e: Event) => {
    this.ended = true;
    const err = (e as unknown as { error?: Error }).error;
    if (err) this.error = err;
    this.wake?.();
  };

  /** Stops listening (the stream keeps any later bytes to itself). */
  dispose(): void {
    this.stream.removeEventListener('message', this.onMessage);
    this.stream.removeEventListener('end', this.onEnd);
    this.stream.removeEventListener('close', this.onClose);
  }

  private async waitFor(n: number, what: string): Promise<void> {
    while (this.queued < n) {
      if (this.error)
        throw new WireError(`${what}: stream failed after ${this.queued} of ${n} bytes: ${this.error.message}`, {
          cutShort: true,
        });
      if (this.ended || this.stream.readableEnded)
        throw new WireError(`stream ended after ${this.queued} of ${n} bytes of ${what}`, { cutShort: true });
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }

  /** Exactly `n` bytes, or WireError if the stream ends or fails first. */
  async read(n: number, what: string): Promise<Uint8Array> {
    await this.waitFor(n, what);
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const head = this.chunks[0];
      const take = Math.min(n - at, head.length);
      out.set(head.subarray(0, take), at);
      at += take;
      if (take === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(take);
    }
    this.queued -= n;
    return out;
  }

  /** One length-prefixed JSON message of at most `maxBytes` bytes (the length is checked before the body is read). */
  async readJson(maxBytes: number, what: string): Promise<unknown> {
    const head = await this.read(4, `${what} length`);
    const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, false);
    if (len === 0 || len > maxBytes) throw new WireError(`${what} of ${len} bytes (allowed 1–${maxBytes})`);
    const body = await this.read(len, what);
    try {
      return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
    } catch (e) {
      throw new WireError(`${what} is not UTF-8 JSON: ${(e as Error).message}`);
    }
  }

  /**
   * Resolves true once the remote end closed its side with nothing left unread, false as soon as more bytes are there.
   */
  async atEnd(): Promise<boolean> {
    for (;;) {
      if (this.queued > 0) return false;
      if (this.ended || this.stream.readableEnded) return true;
      if (this.error) throw new WireError(`stream failed: ${this.error.message}`);
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }
}

/**
 * Writes bytes in chunks of at most `chunkBytes`, waiting for the stream to drain whenever it asks to. Returns the
 * largest chunk written.
 */
export async function writeBytes(
  stream: Stream,
  bytes: Uint8Array,
  signal?: AbortSignal,
  chunkBytes = MAX_CHUNK_BYTES,
): Promise<number> {
  const size = Math.max(1, Math.min(chunkBytes, MAX_CHUNK_BYTES));
  let largest = 0;
  for (let at = 0; at < bytes.length; at += size) {
    const chunk = bytes.subarray(at, Math.min(at + size, bytes.length));
    largest = Math.max(largest, chunk.length);
    if (!stream.send(chunk)) await stream.onDrain({ signal });
  }
  return largest;
}

export function encodeJson(message: unknown): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(message));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, false);
  out.set(body, 4);
  return out;
}

export async function writeJson(stream: Stream, message: unknown, signal?: AbortSignal): Promise<void> {
  await writeBytes(stream, encodeJson(message), signal);
}

/** `signal` and a timeout together. */
export function withTimeout(timeoutMs: number, signal?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs);
  return signal ? AbortSignal.any([signal, t]) : t;
}

/**
 * A stream for `protocol` to `peer`, over an open connection without relay limits (the direct WebRTC one)
 * when there is one: bulk bytes must not cross the relay, whose circuits are limited to signalling.
 */
export async function openStream(
  node: Libp2p,
  peer: PeerId | string,
  protocol: string,
  signal: AbortSignal,
): Promise<Stream> {
  const id = typeof peer === 'string' ? peerIdFromString(peer) : peer;
  const conn: Connection | undefined = node
    .getConnections(id)
    .find((c) => c.status === 'open' && c.limits === undefined);
  try {
    return conn ? await conn.newStream(protocol, { signal }) : await node.dialProtocol(id, protocol, { signal });
  } catch (e) {
    throw new WireError(`cannot open ${protocol} to ${id.toString()}: ${(e as Error)?.message ?? String(e)}`);
  }
}

/** Makes the stream fail (and so every pending read or drain wait) when `signal` aborts. */
export function abortOn(stream: Stream, signal: AbortSignal): () => void {
  const onAbort = () =>
    stream.abort(new WireError(`aborted: ${String(signal.reason?.message ?? signal.reason ?? 'no reason')}`));
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}
