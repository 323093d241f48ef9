/**
 * Binding a peer id to a wallet: the wallet signs EIP-712 typed data (peer id, wallet, nonce, expiry) and the
 * peer signs the same 32-byte EIP-712 digest with its libp2p key. Both are needed: the wallet's alone would let
 * anyone claim another peer's work, the peer's alone would let a peer name any wallet. The nonce (issued per
 * wallet by the coordinator, used once) and the expiry stop replays.
 */
import { peerIdFromString } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { bytesToHex, getAddress, hashTypedData, hexToBytes, isAddress, recoverTypedDataAddress, type Hex } from 'viem';
import { TesseraError } from '../errors.ts';

export const BINDING_TYPES = {
  Binding: [
    { name: 'peerId', type: 'string' },
    { name: 'wallet', type: 'address' },
    { name: 'nonce', type: 'uint256' },
    { name: 'expiry', type: 'uint256' },
  ],
} as const;

export function bindingDomain(chainId: number) {
  return { name: 'Tessera', version: '1', chainId } as const;
}

export interface BindingMessage {
  peerId: string;
  wallet: `0x${string}`;
  nonce: bigint;
  /** Unix seconds after which the signature is refused. */
  expiry: bigint;
}

/** What the wallet signs (eth_signTypedData_v4 / viem signTypedData). */
export function bindingTypedData(chainId: number, m: BindingMessage) {
  return { domain: bindingDomain(chainId), types: BINDING_TYPES, primaryType: 'Binding' as const, message: m };
}

export function bindingDigest(chainId: number, m: BindingMessage): Hex {
  return hashTypedData(bindingTypedData(chainId, m));
}

/** The peer's half: its Ed25519 signature over the EIP-712 digest (0x hex). */
export async function signBindingAsPeer(key: PrivateKey, chainId: number, m: BindingMessage): Promise<Hex> {
  return bytesToHex(await key.sign(hexToBytes(bindingDigest(chainId, m))));
}

export interface SignedBinding {
  peerId: string;
  wallet: string;
  nonce: string;
  expiry: string;
  walletSignature: string;
  peerSignature: string;
}

export class BindingError extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('binding', message, options);
  }
}

/**
 * Checks both signatures and the expiry; returns the message with a checksummed wallet or throws BindingError
 * with the reason. (The nonce's freshness is the coordinator's to check: it knows which it issued.)
 */
export async function verifyBinding(b: SignedBinding, chainId: number, nowSeconds: number): Promise<BindingMessage> {
  if (typeof b.wallet !== 'string' || !isAddress(b.wallet))
    throw new BindingError(`wallet ${JSON.stringify(b.wallet)} is not an address`);
  if (!/^\d{1,30}$/.test(String(b.nonce)) || !/^\d{1,20}$/.test(String(b.expiry)))
    throw new BindingError('nonce and expiry must be decimal integers');
  const m: BindingMessage = {
    peerId: b.peerId,
    wallet: getAddress(b.wallet),
    nonce: BigInt(b.nonce),
    expiry: BigInt(b.expiry),
  };
  if (m.expiry <= BigInt(Math.floor(nowSeconds)))
    throw new BindingError(`binding expired at ${m.expiry} (now ${Math.floor(nowSeconds)})`);
  if (!/^0x[0-9a-fA-F]{130}$/.test(b.walletSignature))
    throw new BindingError('walletSignature must be a 65-byte 0x hex signature');
  if (!/^0x[0-9a-f]{128}$/.test(b.peerSignature))
    throw new BindingError('peerSignature must be a 64-byte 0x hex Ed25519 signature');
  let signer: string;
  try {
    signer = await recoverTypedDataAddress({ ...bindingTypedData(chainId, m), signature: b.walletSignature as Hex });
  } catch (e) {
    throw new BindingError(`wallet signature does not recover: ${(e as Error).message.split('\n')[0]}`);
  }
  if (getAddress(signer) !== m.wallet)
    throw new BindingError(`wallet signature is by ${signer}, not ${m.wallet} (wrong key, chain id or message)`);
  let peerOk = false;
  try {
    const key = peerIdFromString(m.peerId).publicKey;
    peerOk = !!key && (await key.verify(hexToBytes(bindingDigest(chainId, m)), hexToBytes(b.peerSignature as Hex)));
  } catch {
    peerOk = false;
  }
  if (!peerOk) throw new BindingError(`peer signature is not ${m.peerId}'s over this binding`);
  return m;
}
