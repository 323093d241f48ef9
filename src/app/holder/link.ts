/**
 * Linking this tab's peer to the connected wallet: both keys sign the same EIP-712 binding (see
 * src/ledger/binding.ts for why both). The wallet signs through wagmi; the tab's libp2p key signs locally.
 */
import type { PrivateKey } from '@libp2p/interface';
import { getAddress, type Address, type Hex } from 'viem';
import { bindingTypedData, signBindingAsPeer, type BindingMessage } from '../../ledger/binding.ts';
import type { Binding, HolderApi } from './api.ts';

/** Ten minutes: long enough to read a wallet prompt, short enough that a leaked signature soon dies. */
export const LINK_EXPIRY_SECONDS = 600;

export type TypedDataSigner = (typedData: ReturnType<typeof bindingTypedData>) => Promise<Hex>;

export interface LinkInput {
  api: HolderApi;
  key: PrivateKey;
  peerId: string;
  wallet: Address;
  /** The chain the page is configured for; the coordinator's nonce must be for the same one. */
  chainId: number;
  signTypedData: TypedDataSigner;
  /** Unix seconds (tests pass a fixed clock). */
  now?: () => number;
  /** Progress for the page's status line. */
  onStep?: (step: string) => void;
}

export async function linkPeer(i: LinkInput): Promise<Binding> {
  const now = i.now ?? (() => Math.floor(Date.now() / 1000));
  i.onStep?.('Asking the coordinator for a one-time nonce…');
  const n = await i.api.nonce(i.wallet);
  if (n.chainId !== i.chainId)
    throw new Error(`the coordinator binds on chain ${n.chainId}, but this page is set up for chain ${i.chainId}`);
  if (getAddress(n.wallet) !== getAddress(i.wallet)) throw new Error(`the nonce is for ${n.wallet}, not ${i.wallet}`);
  const ttl = Math.min(LINK_EXPIRY_SECONDS, n.maxExpirySeconds > 0 ? n.maxExpirySeconds : LINK_EXPIRY_SECONDS);
  const message: BindingMessage = {
    peerId: i.peerId,
    wallet: getAddress(i.wallet),
    nonce: BigInt(n.nonce),
    expiry: BigInt(now() + ttl),
  };
  i.onStep?.('Sign the link in your wallet…');
  const walletSignature = await i.signTypedData(bindingTypedData(n.chainId, message));
  const peerSignature = await signBindingAsPeer(i.key, n.chainId, message);
  i.onStep?.('Sending both signatures to the coordinator…');
  return i.api.bind({
    peerId: message.peerId,
    wallet: message.wallet,
    nonce: message.nonce.toString(),
    expiry: message.expiry.toString(),
    walletSignature,
    peerSignature,
  });
}
