/**
 * The chain Tessera settles on, as `npm start` and the coordinator CLI set it up (Node only):
 *  - by default a local anvil (the real binary from @foundry-rs/anvil) on 127.0.0.1 whose state persists in
 *    .tessera/anvil-state.json (dumped on a clean stop and every LOCAL_DUMP_SECONDS), with the contracts deployed
 *    once and their addresses in .tessera/deployment.json. A deployment whose chain state is gone is an error that
 *    says what to do, never a silent redeploy: the coordinator's database settles against those contracts;
 *  - or any EVM chain: TESSERA_RPC_URL + TESSERA_CHAIN_ID + TESSERA_SETTLER_KEY, with TESSERA_DEPLOYMENT naming
 *    a deployment file (or TESSERA_DEPLOYER_KEY to deploy there; it then owns the registry).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createPublicClient, http, isHex, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { ANVIL_KEYS, lastGoodState, startAnvil, type Anvil } from './anvil.ts';
import { InferenceEscrowAbi } from './artifacts.ts';
import { chainClients } from './client.ts';
import { deployEscrow, deployTessera, readDeployment, writeDeployment, type Deployment } from './deploy.ts';

export interface ChainSetup {
  deployment: Deployment;
  deploymentPath: string;
  settlerKey: Hex;
  /** The registry owner's key, when this process may register models on chain. */
  ownerKey?: Hex;
  /** The local node this process started (stop it on shutdown). */
  anvil?: Anvil;
}

/** Seconds a posted root waits before it can be claimed (the registry owner may revoke it meanwhile). */
export const LOCAL_CHALLENGE_SECONDS = 60;
/** Seconds between announcing and taking back an unspent inference deposit on the local chain. */
export const LOCAL_ESCROW_DELAY_SECONDS = 300;
/** Seconds between the local node's state dumps besides the one on a clean stop (what a SIGKILL may lose). */
export const LOCAL_DUMP_SECONDS = 1;

/** The local chain's state file in a state directory. */
export const localStatePath = (dir: string) => join(dir, 'anvil-state.json');

/** Whether the escrow dedupes usage identifiers (`charged(bytes32)`); escrows deployed before it do not. */
async function escrowDedupes(rpcUrl: string, escrow: Hex): Promise<boolean> {
  try {
    await createPublicClient({ transport: http(rpcUrl) }).readContract({
      address: escrow,
      abi: InferenceEscrowAbi,
      functionName: 'charged',
      args: [`0x${'00'.repeat(32)}`],
    });
    return true;
  } catch {
    return false;
  }
}

function key(name: string): Hex | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  if (!isHex(v) || v.length !== 66) throw new Error(`${name} must be a 0x-prefixed 32-byte hex private key`);
  return v;
}

async function hasCode(rpcUrl: string, address: Hex): Promise<boolean> {
  const code = await createPublicClient({ transport: http(rpcUrl) }).getCode({ address });
  return !!code && code !== '0x';
}

export async function setupChain(
  dir: string,
  opts: { port?: number; challengeSeconds?: number } = {},
): Promise<ChainSetup> {
  const deploymentPath = process.env.TESSERA_DEPLOYMENT || join(dir, 'deployment.json');
  const rpcUrl = process.env.TESSERA_RPC_URL;
  if (rpcUrl) {
    const chainId = Number(process.env.TESSERA_CHAIN_ID);
    if (!Number.isSafeInteger(chainId) || chainId <= 0)
      throw new Error('TESSERA_CHAIN_ID must be the chain id of TESSERA_RPC_URL');
    const settlerKey = key('TESSERA_SETTLER_KEY');
    if (!settlerKey) throw new Error('TESSERA_SETTLER_KEY must hold the settlement key when TESSERA_RPC_URL is set');
    const ownerKey = key('TESSERA_DEPLOYER_KEY');
    if (existsSync(deploymentPath))
      return { deployment: readDeployment(deploymentPath), deploymentPath, settlerKey, ownerKey };
    if (!ownerKey)
      throw new Error(
        `no deployment at ${deploymentPath}: set TESSERA_DEPLOYMENT to one, or TESSERA_DEPLOYER_KEY to deploy`,
      );
    const deployment = await deployTessera({
      rpcUrl,
      chainId,
      deployerKey: ownerKey,
      settlerAddress: privateKeyToAccount(settlerKey).address,
      challengeDelaySeconds: opts.challengeSeconds ?? 24 * 3600,
    });
    writeDeployment(deploymentPath, deployment);
    return { deployment, deploymentPath, settlerKey, ownerKey };
  }
  // Local: anvil's dev account 0 owns the registry, account 1 is the settlement key.
  const statePath = localStatePath(dir);
  const existing = existsSync(deploymentPath) ? readDeployment(deploymentPath) : undefined;
  if (existing && !existsSync(statePath))
    throw new Error(
      `the local chain's state ${statePath} is missing, but ${deploymentPath} names contracts on it (and the ` +
        `coordinator database beside it settled roots and charges there). Restore the state file (a copy may be ` +
        `at ${lastGoodState(statePath)}), or start over: delete ${deploymentPath} to deploy fresh contracts (and ` +
        `${join(dir, 'coordinator.db')} to forget what was settled on the lost chain).`,
    );
  const anvil = await startAnvil({ port: opts.port, statePath, dumpEverySeconds: LOCAL_DUMP_SECONDS });
  try {
    const ownerKey = ANVIL_KEYS[0];
    const settlerKey = ANVIL_KEYS[1];
    if (existing) {
      const d = existing;
      if (d.chainId !== anvil.chainId || !(await hasCode(anvil.rpcUrl, d.registry)))
        throw new Error(
          `the local chain from ${statePath} does not hold the contracts of ${deploymentPath} (registry ` +
            `${d.registry} on chain ${d.chainId}): that state file belongs to another deployment. Put the right ` +
            `state file back, or delete ${deploymentPath} (and ${statePath}) to deploy fresh contracts.`,
        );
      const deployment = { ...d, rpcUrl: anvil.rpcUrl };
      // A deployment from before inference payments, or before the escrow deduped usage: a new escrow, once
      // (deposits in the old one stay withdrawable there).
      if (!deployment.escrow || !(await escrowDedupes(anvil.rpcUrl, deployment.escrow))) {
        deployment.escrow = await deployEscrow(
          chainClients(anvil.rpcUrl, anvil.chainId, ownerKey),
          privateKeyToAccount(settlerKey).address,
          LOCAL_ESCROW_DELAY_SECONDS,
        );
        writeDeployment(deploymentPath, deployment);
      }
      return { deployment, deploymentPath, settlerKey, ownerKey, anvil };
    }
    const deployment = await deployTessera({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      deployerKey: ownerKey,
      settlerAddress: privateKeyToAccount(settlerKey).address,
      challengeDelaySeconds: opts.challengeSeconds ?? LOCAL_CHALLENGE_SECONDS,
      escrowWithdrawDelaySeconds: LOCAL_ESCROW_DELAY_SECONDS,
    });
    writeDeployment(deploymentPath, deployment);
    return { deployment, deploymentPath, settlerKey, ownerKey, anvil };
  } catch (e) {
    await anvil.stop();
    throw e;
  }
}
