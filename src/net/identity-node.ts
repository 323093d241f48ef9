/**
 * A Node peer's identity: an Ed25519 key kept as libp2p protobuf bytes in a file readable by its owner only
 * (mode 0600), so a restarted worker keeps its peer id, and with it its receipts and shares.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { NetError } from './node.ts';

export async function loadOrCreateKey(path: string): Promise<PrivateKey> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new NetError(`cannot read peer key ${path}: ${(e as Error).message}`);
  }
  if (bytes) {
    try {
      return privateKeyFromProtobuf(bytes);
    } catch (e) {
      throw new NetError(
        `peer key ${path} is not a libp2p private key (${(e as Error).message}); move it away to create a new identity`,
      );
    }
  }
  const key = await generateKeyPair('Ed25519');
  await mkdir(dirname(path), { recursive: true });
  // 'wx': never overwrite a key another process created meanwhile.
  await writeFile(path, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600); // the umask may have narrowed it further, never widened; make it exact
  return key;
}
