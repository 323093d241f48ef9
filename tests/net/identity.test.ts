import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOrCreateKey } from '../../src/net/identity-node.ts';
import { NetError } from '../../src/net/node.ts';

describe('loadOrCreateKey (Node)', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('creates an Ed25519 key readable by its owner only, and loads the same identity again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-key-'));
    dirs.push(dir);
    const path = join(dir, 'nested', 'peer.key');
    const key = await loadOrCreateKey(path);
    expect(key.type).toBe('Ed25519');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateKey(path);
    expect(peerIdFromPrivateKey(again).toString()).toBe(peerIdFromPrivateKey(key).toString());
  });

  it('refuses a file that is not a key instead of replacing it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tessera-key-'));
    dirs.push(dir);
    const path = join(dir, 'peer.key');
    await writeFile(path, 'not a key');
    await expect(loadOrCreateKey(path)).rejects.toThrow(NetError);
    await expect(loadOrCreateKey(path)).rejects.toThrow(/is not a libp2p private key/);
  });
});
