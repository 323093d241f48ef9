/** Node only (file IO): deploys Tessera's contracts and reads/writes deployment JSON files. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { getAddress, type Abi, type Address, type Hex } from 'viem';
import {
  InferenceEscrowAbi,
  InferenceEscrowBytecode,
  ModelRegistryAbi,
  ModelRegistryBytecode,
  TestTokenAbi,
  TestTokenBytecode,
} from './artifacts.ts';
import { chainClients, sendWrite, type ChainClients } from './client.ts';
import { parseDeployment, type Deployment, type ModelAddresses } from './deployment.ts';

export type { Deployment, ModelAddresses } from './deployment.ts';
export { parseDeployment } from './deployment.ts';

export type ModelSpec = { modelId: string; name: string; symbol: string };

export type DeployOptions = {
  /** Seconds a requester waits between announcing and taking a withdrawal from the escrow (default 3600). */
  escrowWithdrawDelaySeconds?: number;
  rpcUrl: string;
  chainId: number;
  deployerKey: Hex;
  settlerAddress: Address;
  challengeDelaySeconds: number;
  /** Existing ERC-20 for inference revenue; a fresh TestToken is deployed when absent. */
  paymentToken?: Address;
  /** Registry owner (may revoke roots, registers models); the deployer when absent. */
  owner?: Address;
  /** Models to register right away with settlerAddress and challengeDelaySeconds (needs owner = deployer). */
  models?: ModelSpec[];
};

/** Deploys a contract and waits for it to be mined; returns its address and block. */
export async function deployContract(
  c: ChainClients,
  abi: Abi,
  bytecode: Hex,
  args: readonly unknown[] = [],
): Promise<{ address: Address; blockNumber: bigint }> {
  if (!c.walletClient || !c.account) throw new Error('deployContract: no key given to chainClients');
  const hash = await c.walletClient.deployContract({
    abi,
    bytecode,
    args,
    account: c.account,
    chain: c.chain,
  } as Parameters<typeof c.walletClient.deployContract>[0]);
  const receipt = await c.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success' || !receipt.contractAddress) throw new Error(`deployment reverted (tx ${hash})`);
  return { address: getAddress(receipt.contractAddress), blockNumber: receipt.blockNumber };
}

/** Deploys the payment token (unless given) and the registry: `new ModelRegistry(owner)`, nothing else. */
export async function deployTessera(opts: DeployOptions): Promise<Deployment> {
  const c = chainClients(opts.rpcUrl, opts.chainId, opts.deployerKey);
  const paymentToken = opts.paymentToken ?? (await deployContract(c, TestTokenAbi, TestTokenBytecode)).address;
  const registry = await deployContract(c, ModelRegistryAbi, ModelRegistryBytecode, [opts.owner ?? c.account!.address]);
  const d: Deployment = {
    rpcUrl: opts.rpcUrl,
    chainId: opts.chainId,
    registry: registry.address,
    paymentToken,
    models: {},
    settler: opts.settlerAddress,
    challengeDelaySeconds: opts.challengeDelaySeconds,
    deployBlock: Number(registry.blockNumber),
  };
  d.escrow = await deployEscrow(c, opts.settlerAddress, opts.escrowWithdrawDelaySeconds ?? 3600);
  for (const m of opts.models ?? []) await registerModelOnChain(d, opts.deployerKey, m);
  return d;
}

/** The InferenceEscrow: requesters' deposits, charged by `settler` into model vaults, withdrawn after a delay. */
export async function deployEscrow(c: ChainClients, settler: Address, withdrawDelaySeconds: number): Promise<Address> {
  return (await deployContract(c, InferenceEscrowAbi, InferenceEscrowBytecode, [settler, BigInt(withdrawDelaySeconds)]))
    .address;
}

export type RegisterOptions = ModelSpec & { settler?: Address; challengeDelay?: number };

/**
 * `registry.registerModel(...)` from the owner's key with the deployment's payment token; settler and delay
 * default to those recorded by deployTessera. Records the new addresses in `deployment.models` and returns them.
 */
export async function registerModelOnChain(
  deployment: Deployment,
  key: Hex,
  m: RegisterOptions,
): Promise<ModelAddresses> {
  const settler = m.settler ?? deployment.settler;
  const delay = m.challengeDelay ?? deployment.challengeDelaySeconds;
  if (!settler || delay === undefined)
    throw new Error(
      `registerModelOnChain(${m.modelId}): settler and challengeDelay are needed (the deployment records none)`,
    );
  const c = chainClients(deployment.rpcUrl, deployment.chainId, key);
  await sendWrite(c, {
    address: deployment.registry,
    abi: ModelRegistryAbi,
    functionName: 'registerModel',
    args: [m.modelId, m.name, m.symbol, settler, BigInt(delay), deployment.paymentToken],
  });
  const [token, vault, distributor] = await c.publicClient.readContract({
    address: deployment.registry,
    abi: ModelRegistryAbi,
    functionName: 'model',
    args: [m.modelId],
  });
  const model = { token, vault, distributor };
  deployment.models[m.modelId] = model;
  return model;
}

export function readDeployment(path: string): Deployment {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read deployment ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`malformed deployment ${path}: not JSON (${(e as Error).message})`);
  }
  return parseDeployment(json, `deployment ${path}`);
}

export function writeDeployment(path: string, d: Deployment): void {
  parseDeployment(d, 'deployment to write');
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(d, null, 2) + '\n');
}
