import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  bindingTypedData,
  signBindingAsPeer,
  verifyBinding,
  type BindingMessage,
  type SignedBinding,
} from '../../src/ledger/binding.ts';

// Two of anvil's well-known dev keys: test wallets only.
const ALICE = privateKeyToAccount('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80');
const BOB = privateKeyToAccount('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d');
const CHAIN = 31337;
const NOW = 1_800_000_000;

async function bind(over: Partial<BindingMessage> = {}, signer = ALICE, chainId = CHAIN) {
  const key = await generateKeyPair('Ed25519');
  const m: BindingMessage = {
    peerId: peerIdFromPrivateKey(key).toString(),
    wallet: ALICE.address,
    nonce: 1n,
    expiry: BigInt(NOW + 600),
    ...over,
  };
  const walletSignature = await signer.signTypedData(bindingTypedData(chainId, m));
  const peerSignature = await signBindingAsPeer(key, chainId, m);
  const signed: SignedBinding = {
    peerId: m.peerId,
    wallet: m.wallet,
    nonce: String(m.nonce),
    expiry: String(m.expiry),
    walletSignature,
    peerSignature,
  };
  return { signed, key, m };
}

describe('wallet binding (EIP-712 + the peer countersignature)', () => {
  it('accepts both signatures over the same message', async () => {
    const { signed, m } = await bind();
    expect(await verifyBinding(signed, CHAIN, NOW)).toEqual(m);
  });

  it(
    'refuses another wallet, another chain, an expired message, a changed field and another peer’s ' +
      'countersignature',
    async () => {
      const byBob = await bind({}, BOB);
      await expect(verifyBinding(byBob.signed, CHAIN, NOW)).rejects.toThrow(/signature is by 0x70997970/);
      const otherChain = await bind({}, ALICE, 1);
      await expect(verifyBinding(otherChain.signed, CHAIN, NOW)).rejects.toThrow(/not 0xf39F/);
      const { signed } = await bind();
      await expect(verifyBinding(signed, CHAIN, NOW + 601)).rejects.toThrow(/expired/);
      await expect(verifyBinding({ ...signed, nonce: '2' }, CHAIN, NOW)).rejects.toThrow(/wallet signature/);
      const other = await bind();
      // The wallet signed for peer A; peer B's signature over B's message cannot stand in for A's.
      await expect(verifyBinding({ ...signed, peerSignature: other.signed.peerSignature }, CHAIN, NOW)).rejects.toThrow(
        /peer signature/,
      );
      await expect(verifyBinding({ ...signed, wallet: 'nope' }, CHAIN, NOW)).rejects.toThrow(/not an address/);
      await expect(verifyBinding({ ...signed, walletSignature: '0x00' }, CHAIN, NOW)).rejects.toThrow(/65-byte/);
    },
  );
});
