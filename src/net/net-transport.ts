/**
 * The Transport of src/train/transport.ts over libp2p streams (`/tessera/tensor/1.0.0`): one outgoing stream
 * per destination peer, frames written back to back in ≤ 64 KiB chunks with backpressure; incoming streams
 * decoded, checked against the receiver's assignment and put into a Mailbox (which ignores replays). A bad frame
 * is refused, logged and counted, and never harms this transport: other streams and peers keep working.
 */
import type { Libp2p, PeerId, Stream, Connection } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import {
  frameBytes,
  Mailbox,
  TransportError,
  type Frame,
  type FrameKind,
  type ReceiveOptions,
  type Transport,
  type TransportStats,
} from '../train/transport.ts';
import { encodeFrame, FrameDecoder, FrameError, TENSOR_PROTOCOL, type FrameLimits } from './frame-codec.ts';

/** Chromium closes a data channel on a message over 256 KiB; 64 KiB keeps well clear and still amortises calls. */
export const MAX_CHUNK_BYTES = 64 * 1024;
/** How long to keep asking a connected peer that does not speak the tensor protocol yet. */
export const PROTOCOL_WAIT_MS = 60_000;

export interface NetLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface NetTransportStats extends TransportStats {
  /** Frames (or undecodable bytes) refused: malformed, over the limits, failing the check, or cut off mid-frame. */
  framesRejected: number;
  /** Well-formed frames the Mailbox ignored as replays of a (step, micro, kind) already received. */
  framesDuplicate: number;
}

export interface NetTransportOptions {
  node: Libp2p;
  /** This endpoint's worker id (what other workers pass to send()). */
  id: string;
  /** Directory: the peer that runs a worker id. */
  resolve: (workerId: string) => PeerId | string;
  limits: FrameLimits;
  /**
   * Validates a decoded frame from `fromPeer` (peer id string) against this worker's assignment; throws to refuse (e.g.
   * checkFrame).
   */
  check: (frame: Frame, fromPeer: string) => void;
  log?: NetLogger;
  /** Write chunk size, at most MAX_CHUNK_BYTES (default). */
  chunkBytes?: number;
}

interface OutLink {
  stream?: Stream;
  /** Frames to one peer are written one after another, never interleaved. */
  tail: Promise<void>;
}

const quiet: NetLogger = { info: () => {}, warn: (m) => console.warn(m) };

export class NetTransport implements Transport {
  readonly id: string;
  readonly stats: NetTransportStats = {
    bytesSent: 0,
    bytesReceived: 0,
    framesSent: 0,
    framesReceived: 0,
    framesRejected: 0,
    framesDuplicate: 0,
  };
  /** Frame bytes sent to and accepted from each peer (by peer id): the link measurements heartbeats report. */
  readonly peerStats = new Map<string, { bytesSent: number; bytesReceived: number }>();
  private readonly opts: NetTransportOptions;
  private readonly log: NetLogger;
  private readonly chunkBytes: number;
  private readonly box = new Mailbox();
  private readonly out = new Map<string, OutLink>();
  private readonly inbound = new Set<Stream>();
  private started = false;
  private closed = false;

  constructor(opts: NetTransportOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.log = opts.log ?? quiet;
    this.chunkBytes = Math.min(opts.chunkBytes ?? MAX_CHUNK_BYTES, MAX_CHUNK_BYTES);
    if (!(this.chunkBytes >= 1)) throw new TransportError(`${this.id}: chunkBytes must be at least 1`);
  }

  /** Registers the protocol handler; frames sent to this worker before start() are refused by libp2p. */
  async start(): Promise<void> {
    if (this.started) return;
    await this.opts.node.handle(TENSOR_PROTOCOL, (stream, connection) => this.onStream(stream, connection));
    this.started = true;
  }

  async send(to: string, frame: Frame): Promise<void> {
    if (this.closed) throw new TransportError(`${this.id}: send on a closed transport`);
    const bytes = encodeFrame(frame);
    const peer = this.peerOf(to);
    const key = peer.toString();
    let link = this.out.get(key);
    if (!link) this.out.set(key, (link = { tail: Promise.resolve() }));
    const write = link.tail.then(() => this.writeFrame(link, peer, bytes, to));
    link.tail = write.catch(() => {});
    await write;
    this.stats.bytesSent += frameBytes(frame);
    this.stats.framesSent++;
    this.peerCounter(key).bytesSent += frameBytes(frame);
  }

  async receive(step: number, micro: number, kind: FrameKind, opts: ReceiveOptions = {}): Promise<Frame> {
    const f = await this.box.take(
      step,
      micro,
      kind,
      opts.timeoutMs ?? 120_000,
      this.id,
      opts.signal,
      opts.forgetBefore,
    );
    this.stats.bytesReceived += frameBytes(f);
    this.stats.framesReceived++;
    return f;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.started)
      this.opts.node.unhandle(TENSOR_PROTOCOL).catch((e: Error) => this.log.warn(`${this.id}: unhandle: ${e.message}`));
    for (const link of this.out.values()) {
      const s = link.stream;
      if (s) s.close().catch(() => s.abort(new TransportError('transport closed')));
    }
    this.out.clear();
    for (const s of this.inbound) s.abort(new TransportError('transport closed'));
    this.inbound.clear();
    this.box.close();
  }

  private peerOf(to: string): PeerId {
    const p = this.opts.resolve(to);
    if (p === undefined || p === null || p === '')
      throw new TransportError(`${this.id}: no peer known for worker ${to}`);
    if (typeof p !== 'string') return p;
    try {
      return peerIdFromString(p);
    } catch (e) {
      throw new TransportError(
        `${this.id}: worker ${to} resolves to ${JSON.stringify(p)}, not a peer id (${(e as Error).message})`,
      );
    }
  }

  /**
   * Writes one encoded frame; a stream found broken is replaced once (the receiver's decoder dies with the old one).
   */
  private async writeFrame(link: OutLink, peer: PeerId, bytes: Uint8Array, to: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const stream = await this.outStream(link, peer, to);
      try {
        for (let at = 0; at < bytes.length; at += this.chunkBytes) {
          if (!stream.send(bytes.subarray(at, at + this.chunkBytes))) await stream.onDrain();
        }
        return;
      } catch (e) {
        if (link.stream === stream) link.stream = undefined;
        if (stream.status === 'open') stream.abort(e as Error);
        if (attempt >= 1 || this.closed)
          throw new TransportError(`${this.id}: sending to ${to} (${peer.toString()}) failed: ${(e as Error).message}`);
        this.log.info(`${this.id}: stream to ${to} broke (${(e as Error).message}); retrying on a new stream`);
      }
    }
  }

  private async outStream(link: OutLink, peer: PeerId, to: string): Promise<Stream> {
    const s = link.stream;
    if (s && s.status === 'open' && s.writeStatus === 'writable') return s;
    // Prefer an open connection without relay limits (the direct WebRTC one) over whatever dialProtocol picks.
    const conn: Connection | undefined = this.opts.node
      .getConnections(peer)
      .find((c) => c.status === 'open' && c.limits === undefined);
    let stream: Stream | undefined;
    // A peer that is connected but still loading its stage has not registered the protocol yet ("protocol
    // selection failed"): retry with backoff for a while rather than failing the step.
    const deadline = Date.now() + PROTOCOL_WAIT_MS;
    for (let wait = 100; !stream; wait = Math.min(2000, wait * 2)) {
      try {
        stream =
          conn && conn.status === 'open'
            ? await conn.newStream(TENSOR_PROTOCOL)
            : await this.opts.node.dialProtocol(peer, TENSOR_PROTOCOL);
      } catch (e) {
        const unsupported = /protocol selection failed|not supported|UnsupportedProtocol/i.test(
          `${(e as Error).name} ${(e as Error).message}`,
        );
        if (!unsupported || this.closed || Date.now() + wait > deadline) {
          throw new TransportError(
            `${this.id}: cannot open ${TENSOR_PROTOCOL} to ${to} (${peer.toString()}): ${(e as Error).message}`,
          );
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    if (this.closed) {
      stream.abort(new TransportError('transport closed'));
      throw new TransportError(`${this.id}: transport closed while opening a stream to ${to}`);
    }
    link.stream = stream;
    stream.addEventListener('close', () => {
      if (link.stream === stream) link.stream = undefined;
    });
    return stream;
  }

  /**
   * Reads one incoming stream. Undecodable bytes (bad framing, over the limits, checksum) reset the stream: its
   * framing is lost. A well-formed frame the check refuses is dropped but the stream stays: frames are
   * self-delimiting, and resetting would silently lose the sender's next frames, already in flight on it
   * (a late frame outside the step window is an honest peer's mistake). Either way the refusal is counted.
   */
  private async onStream(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString();
    if (this.closed) return stream.abort(new TransportError('transport closed'));
    this.inbound.add(stream);
    const decoder = new FrameDecoder(this.opts.limits);
    try {
      for await (const chunk of stream) {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk.subarray());
        } catch (e) {
          const reason = e instanceof FrameError ? e.reason : (e as Error).message;
          this.stats.framesRejected++;
          this.log.warn(`${this.id}: undecodable data from ${from}: ${reason}; resetting the stream`);
          stream.abort(e instanceof FrameError ? e : new FrameError(reason));
          return;
        }
        for (const f of frames) this.deliver(f, from);
      }
      if (!decoder.idle) {
        this.stats.framesRejected++;
        this.log.warn(`${this.id}: stream from ${from} ended in the middle of a frame`);
      }
    } catch (e) {
      // The stream itself failed (reset by the sender, connection lost): nothing to refuse, nothing to keep.
      if (!this.closed) this.log.info(`${this.id}: stream from ${from} closed: ${(e as Error).message}`);
    } finally {
      this.inbound.delete(stream);
    }
  }

  private deliver(f: Frame, from: string): void {
    if (this.closed) return;
    try {
      this.opts.check(f, from);
    } catch (e) {
      this.stats.framesRejected++;
      this.log.warn(
        `${this.id}: refused a ${f.kind} frame (step ${f.step}, micro ${f.micro}) from ${from}: ` +
          `${e instanceof FrameError ? e.reason : (e as Error).message}`,
      );
      return;
    }
    if (!this.box.put(f)) {
      this.stats.framesDuplicate++;
      this.log.info(`${this.id}: ignored a replayed ${f.kind} frame (step ${f.step}, micro ${f.micro}) from ${from}`);
      return;
    }
    this.peerCounter(from).bytesReceived += frameBytes(f);
  }

  private peerCounter(peer: string): { bytesSent: number; bytesReceived: number } {
    let c = this.peerStats.get(peer);
    if (!c) this.peerStats.set(peer, (c = { bytesSent: 0, bytesReceived: 0 }));
    return c;
  }
}
