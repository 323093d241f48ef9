/** Shared setup for chain tests: a real anvil per test file, a deployment, fresh models and Merkle helpers. */
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { createTestClient, http, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { expect } from 'vitest';
import { ANVIL_KEYS, startAnvil, type Anvil } from '../../src/chain/anvil.ts';
import { ChainWriteError, chainClients, claimShares, postRoot, type ChainClients } from '../../src/chain/client.ts';
import { deployTessera, registerModelOnChain, type Deployment, type ModelAddresses } from '../../src/chain/deploy.ts';

export const OWNER_KEY = ANVIL_KEYS[0];
export const SETTLER_KEY = ANVIL_KEYS[1];
export const addressOf = (key: Hex): Address => privateKeyToAccount(key).address;

export type ChainFixture = {
  anvil: Anvil;
  deployment: Deployment;
  /** Clients for dev account i (0 = registry owner, 1 = settler). */
  as(i: number): ChainClients;
  newModel(challengeDelay?: number): Promise<ModelAddresses>;
  /** evm_increaseTime + evm_mine. */
  advance(seconds: number): Promise<void>;
};

let modelCount = 0;

export async function chainFixture(): Promise<ChainFixture> {
  const anvil = await startAnvil();
  const deployment = await deployTessera({
    rpcUrl: anvil.rpcUrl,
    chainId: anvil.chainId,
    deployerKey: OWNER_KEY,
    settlerAddress: addressOf(SETTLER_KEY),
    challengeDelaySeconds: 3600,
  });
  const clients = new Map<number, ChainClients>();
  const test = createTestClient({ mode: 'anvil', transport: http(anvil.rpcUrl) });
  return {
    anvil,
    deployment,
    as(i) {
      if (!clients.has(i)) clients.set(i, chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[i]));
      return clients.get(i)!;
    },
    newModel(challengeDelay = 3600) {
      const n = ++modelCount;
      return registerModelOnChain(deployment, OWNER_KEY, {
        modelId: `model-${n}`,
        name: `Model ${n} shares`,
        symbol: `M${n}`,
        challengeDelay,
      });
    },
    async advance(seconds) {
      await test.increaseTime({ seconds });
      await test.mine({ blocks: 1 });
    },
  };
}

/** A settlement epoch: StandardMerkleTree over (account, cumulative shares), as the coordinator builds it. */
export function shareTree(entries: Array<[Address, bigint]>) {
  const tree = StandardMerkleTree.of(
    entries.map(([a, s]) => [a, s.toString()]),
    ['address', 'uint256'],
  );
  return {
    root: tree.root as Hex,
    proof: (account: Address) => tree.getProof(entries.findIndex(([a]) => a === account)) as Hex[],
    leaf: (account: Address, shares: bigint) => tree.leafHash([account, shares.toString()]) as Hex,
  };
}

/**
 * Epoch 1 of `model` gives `shares` to one account, which claims them (`settler` must be the model's settler,
 * `holder` the account's clients; the model needs a zero challenge delay): a vault that can take revenue.
 */
export async function soleHolder(
  settler: ChainClients,
  holder: ChainClients,
  model: ModelAddresses,
  shares: bigint,
): Promise<void> {
  const account = holder.account!.address;
  const tree = shareTree([[account, shares]]);
  await postRoot(settler, model, 1n, tree.root);
  await claimShares(holder, model, { epoch: 1n, account, cumulativeShares: shares, proof: tree.proof(account) });
}

/** Awaits a write expected to revert with the given custom error. */
export async function expectRevert(p: Promise<unknown>, errorName: string): Promise<ChainWriteError> {
  try {
    await p;
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(ChainWriteError);
    expect((e as ChainWriteError).errorName, (e as Error).message).toBe(errorName);
    return e as ChainWriteError;
  }
  throw new Error(`expected a revert with ${errorName}, but the call succeeded`);
}
