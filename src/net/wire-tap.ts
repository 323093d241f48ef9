/**
 * A diagnostic tap on every byte this peer receives over libp2p protocol streams (TESSERA_WIRE_TAP on a worker;
 * tests/infer/no-weights-leak.test.ts reads it to show that no protocol hands a peer another stage's weights).
 * It adds a listener to each stream, so it changes nothing of what the protocols read: streams this peer
 * serves are tapped through node.handle, replies to streams it opened through StreamReader's tap.
 */
import type { Libp2p, Stream, StreamHandler } from '@libp2p/interface';
import { setReaderTap } from './stream-io.ts';

export type WireSink = (protocol: string, bytes: Uint8Array) => void;

export function installWireTap(node: Libp2p, sink: WireSink): void {
  const handle = node.handle.bind(node);
  node.handle = ((protocols: string | string[], handler: StreamHandler, opts?: unknown) => {
    const name = Array.isArray(protocols) ? protocols.join(',') : protocols;
    const tapped: StreamHandler = (stream: Stream, connection) => {
      stream.addEventListener('message', (e) =>
        sink(name, (e as unknown as { data: { subarray(): Uint8Array } }).data.subarray()),
      );
      return handler(stream, connection);
    };
    return handle(protocols, tapped, opts as never);
  }) as Libp2p['handle'];
  setReaderTap((bytes) => sink('reply', bytes));
}
