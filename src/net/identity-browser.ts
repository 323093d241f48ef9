/**
 * A browser peer's identity: an Ed25519 key kept as libp2p protobuf bytes in IndexedDB (origin-private), so a
 * reloaded tab keeps its peer id. `path` names the record, e.g. 'peer-key'.
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { NetError } from './node.ts';

const DB = 'tessera-identity';
const STORE = 'keys';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new NetError('IndexedDB request failed'));
  });
}

function openDb(): Promise<IDBDatabase> {
  const r = indexedDB.open(DB, 1);
  r.onupgradeneeded = () => r.result.createObjectStore(STORE);
  return request(r);
}

export async function loadOrCreateKey(path = 'peer-key'): Promise<PrivateKey> {
  const db = await openDb();
  try {
    const stored = await request(db.transaction(STORE, 'readonly').objectStore(STORE).get(path));
    if (stored instanceof Uint8Array) {
      try {
        return privateKeyFromProtobuf(stored);
      } catch (e) {
        throw new NetError(`stored peer key ${path} is not a libp2p private key: ${(e as Error).message}`);
      }
    }
    const key = await generateKeyPair('Ed25519');
    // add() fails if another tab stored a key meanwhile: then use theirs, so one browser keeps one identity.
    try {
      await request(db.transaction(STORE, 'readwrite').objectStore(STORE).add(privateKeyToProtobuf(key), path));
      return key;
    } catch {
      const theirs = await request(db.transaction(STORE, 'readonly').objectStore(STORE).get(path));
      if (theirs instanceof Uint8Array) return privateKeyFromProtobuf(theirs);
      throw new NetError(`cannot store peer key ${path} in IndexedDB`);
    }
  } finally {
    db.close();
  }
}
