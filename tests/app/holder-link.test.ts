import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import {
  type BaseError,
  ContractFunctionExecutionError,
  ContractFunctionRevertedError,
  encodeErrorResult,
  UserRejectedRequestError,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import { EpochDistributorAbi } from '../../src/chain/artifacts.ts';
import { ApiError, holderApi, type HolderApi } from '../../src/app/holder/api.ts';
import { explainError } from '../../src/app/holder/errors.ts';
import { LINK_EXPIRY_SECONDS, linkPeer } from '../../src/app/holder/link.ts';
import { holderWagmiConfig } from '../../src/app/holder/wagmi.ts';
import { verifyBinding, type SignedBinding } from '../../src/ledger/binding.ts';

// anvil's dev account 0: a well-known test key, never used for anything real.
const account = privateKeyToAccount('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80');
const CHAIN = 31337;
const NOW = 1_700_000_000;

/** A fetch that answers from a table of path → [status, body] and records what was sent. */
function fakeFetch(
  routes: Record<string, [number, unknown]>,
  sent: Array<{ path: string; body?: unknown }>,
): typeof fetch {
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const path = String(input);
    sent.push({ path, body: init?.body ? JSON.parse(String(init.body)) : undefined });
    const [status, body] = routes[path] ?? [404, { error: `no route ${path}`, code: 'not_found' }];
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
}

describe('linking this tab’s peer to a wallet', () => {
  it(
    'sends a binding the coordinator’s own check accepts: wallet EIP-712 signature + peer ' + 'countersignature',
    async () => {
      const key = await generateKeyPair('Ed25519');
      const peerId = peerIdFromPrivateKey(key).toString();
      const sent: Array<{ path: string; body?: unknown }> = [];
      const api = holderApi(
        fakeFetch(
          {
            [`/api/wallets/${account.address}/nonce`]: [
              200,
              { wallet: account.address.toLowerCase(), nonce: '42', chainId: CHAIN, maxExpirySeconds: 3600 },
            ],
            '/api/bindings': [201, { binding: { peerId, wallet: account.address, at: NOW } }],
          },
          sent,
        ),
      );
      const steps: string[] = [];
      const binding = await linkPeer({
        api,
        key,
        peerId,
        wallet: account.address,
        chainId: CHAIN,
        signTypedData: (td) => account.signTypedData(td),
        now: () => NOW,
        onStep: (s) => steps.push(s),
      });
      expect(binding).toEqual({ peerId, wallet: account.address, at: NOW });
      expect(steps).toHaveLength(3);
      const body = sent.find((s) => s.path === '/api/bindings')!.body as SignedBinding;
      expect(body).toMatchObject({
        peerId,
        wallet: account.address,
        nonce: '42',
        expiry: String(NOW + LINK_EXPIRY_SECONDS),
      });
      const m = await verifyBinding(body, CHAIN, NOW + 1);
      expect(m.nonce).toBe(42n);
    },
  );

  it('keeps the expiry within what the coordinator allows', async () => {
    const key = await generateKeyPair('Ed25519');
    const peerId = peerIdFromPrivateKey(key).toString();
    let expiry = '';
    const api: HolderApi = {
      ...holderApi(),
      nonce: async () => ({ wallet: account.address, nonce: '1', chainId: CHAIN, maxExpirySeconds: 120 }),
      bind: async (b) => ((expiry = b.expiry), { peerId, wallet: account.address, at: NOW }),
    };
    await linkPeer({
      api,
      key,
      peerId,
      wallet: account.address,
      chainId: CHAIN,
      signTypedData: (td) => account.signTypedData(td),
      now: () => NOW,
    });
    expect(expiry).toBe(String(NOW + 120));
  });

  it('refuses a nonce for another chain or wallet before asking the wallet to sign', async () => {
    const key = await generateKeyPair('Ed25519');
    const peerId = peerIdFromPrivateKey(key).toString();
    let signed = 0;
    const sign = async () => (signed++, '0x' as const);
    const base = holderApi();
    const other: HolderApi = {
      ...base,
      nonce: async () => ({ wallet: account.address, nonce: '1', chainId: 1, maxExpirySeconds: 600 }),
    };
    await expect(
      linkPeer({ api: other, key, peerId, wallet: account.address, chainId: CHAIN, signTypedData: sign }),
    ).rejects.toThrow(/chain 1, but this page is set up for chain 31337/);
    const wrongWallet: HolderApi = {
      ...base,
      nonce: async () => ({
        wallet: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
        nonce: '1',
        chainId: CHAIN,
        maxExpirySeconds: 600,
      }),
    };
    await expect(
      linkPeer({ api: wrongWallet, key, peerId, wallet: account.address, chainId: CHAIN, signTypedData: sign }),
    ).rejects.toThrow(/nonce is for/);
    expect(signed).toBe(0);
  });
});

describe('holder API client', () => {
  it('passes the coordinator’s reason and code through', async () => {
    const api = holderApi(
      fakeFetch({ '/api/bindings': [400, { error: 'nonce already used', code: 'stale_nonce' }] }, []),
    );
    const e = await api
      .bind({
        peerId: 'p',
        wallet: account.address,
        nonce: '1',
        expiry: '2',
        walletSignature: '0x',
        peerSignature: '0x',
      })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(explainError(e)).toBe('nonce already used (stale_nonce)');
  });

  it('reads "no chain" plainly and validates a configured one', async () => {
    expect(await holderApi(fakeFetch({ '/api/chain': [200, { chain: null }] }, [])).chain()).toBeNull();
    const chain = {
      rpcUrl: 'http://127.0.0.1:8545',
      chainId: CHAIN,
      registry: account.address,
      paymentToken: account.address,
      models: {},
    };
    expect((await holderApi(fakeFetch({ '/api/chain': [200, { chain }] }, [])).chain())?.chainId).toBe(CHAIN);
    await expect(
      holderApi(fakeFetch({ '/api/chain': [200, { chain: { ...chain, registry: 'nope' } }] }, [])).chain(),
    ).rejects.toThrow(/registry is not an address/);
  });

  it('refuses share amounts that are not decimal strings (money must not go through floats)', async () => {
    const view = {
      wallet: account.address,
      peers: [],
      models: [
        {
          modelId: 'm',
          pendingFlops: 0,
          epochs: [{ epoch: 1, shares: 1e21, cumulative: '1', status: 'claimable', claimableAt: 1, root: '0x' }],
          claim: null,
        },
      ],
    };
    await expect(
      holderApi(fakeFetch({ [`/api/wallets/${account.address}`]: [200, view] }, [])).wallet(account.address),
    ).rejects.toThrow(/m epoch 1 shares is not a decimal string/);
    const good = {
      ...view,
      models: [{ ...view.models[0], epochs: [{ ...view.models[0].epochs[0], shares: '1000' }] }],
    };
    const parsed = await holderApi(fakeFetch({ [`/api/wallets/${account.address}`]: [200, good] }, [])).wallet(
      account.address,
    );
    expect(parsed.models[0].epochs[0].shares).toBe('1000');
  });
});

describe('holder errors and wagmi config', () => {
  it('explains wallet refusals and contract reverts by name', () => {
    expect(explainError(new UserRejectedRequestError(new Error('User denied')))).toBe(
      'You declined the request in your wallet.',
    );
    const data = encodeErrorResult({ abi: EpochDistributorAbi, errorName: 'NothingToClaim' });
    const revert = new ContractFunctionRevertedError({ abi: EpochDistributorAbi, data, functionName: 'claim' });
    const wrapped = new ContractFunctionExecutionError(revert as BaseError, {
      abi: EpochDistributorAbi,
      functionName: 'claim',
      args: [],
    });
    expect(explainError(wrapped)).toMatch(/^The transaction was refused: there is nothing left to claim/);
  });

  it('builds the chain and one injected connector from the coordinator’s settings', () => {
    const { config, chain } = holderWagmiConfig({ chainId: 31337, rpcUrl: 'http://127.0.0.1:9545' });
    expect(chain).toMatchObject({
      id: 31337,
      name: 'Local chain (anvil)',
      rpcUrls: { default: { http: ['http://127.0.0.1:9545'] } },
    });
    expect(config.chains.map((c) => c.id)).toEqual([31337]);
    expect(config.connectors.map((c) => c.type)).toEqual(['injected']);
  });
});
