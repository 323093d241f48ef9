/**
 * The chaos run's peers are bound to anvil dev wallets before they train, so every epoch earns shares and has a
 * Merkle root to post, recompute and compare (an epoch where no bound wallet earned has none).
 */
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { privateKeyToAccount } from 'viem/accounts';
import { ANVIL_KEYS } from '../src/chain/anvil.ts';
import { bindingTypedData, signBindingAsPeer } from '../src/ledger/binding.ts';

export const CHAIN_ID = 31337;

/**
 * Binds each peer key to one of anvil's dev wallets (accounts 2.., one per peer) with the EIP-712 wallet signature
 * and the peer's own; the coordinator must answer 201.
 */
export async function bindPeers(coordinator: string, keys: PrivateKey[]): Promise<void> {
  for (const [i, key] of keys.entries()) {
    const wallet = privateKeyToAccount(ANVIL_KEYS[2 + (i % (ANVIL_KEYS.length - 2))]);
    const nonce = (await (await fetch(`${coordinator}/api/wallets/${wallet.address}/nonce`)).json()) as {
      nonce: string;
    };
    const message = {
      peerId: peerIdFromPrivateKey(key).toString(),
      wallet: wallet.address,
      nonce: BigInt(nonce.nonce),
      expiry: BigInt(Math.floor(Date.now() / 1000) + 3600),
    };
    const res = await fetch(`${coordinator}/api/bindings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        peerId: message.peerId,
        wallet: message.wallet,
        nonce: String(message.nonce),
        expiry: String(message.expiry),
        walletSignature: await wallet.signTypedData(bindingTypedData(CHAIN_ID, message)),
        peerSignature: await signBindingAsPeer(key, CHAIN_ID, message),
      }),
    });
    if (res.status !== 201) throw new Error(`binding ${message.peerId} to ${wallet.address}: ${await res.text()}`);
  }
}
