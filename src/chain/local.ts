/**
 * The chain Tessera settles on, as `npm start` and the coordinator CLI set it up (Node only):
 *  - by default a local anvil (the real binary from @foundry-rs/anvil) on 127.0.0.1 whose state persists in
 *    .tessera/anvil-state.json, with the contracts deployed once and their addresses in .tessera/deployment.json;
 *  - or any EVM chain: TESSERA_RPC_URL + TESSERA_CHAIN_ID + TESSERA_SETTLER_KEY, with TESSERA_DEPLOYMENT naming
 *    a deployment file (or TESSERA_DEPLOYER_KEY to deploy there; it then owns the registry).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createPublicClient, http, isHex, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { ANVIL_KEYS, startAnvil, type Anvil } from './anvil.ts';
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
  const anvil = await startAnvil({ port: opts.port, statePath: join(dir, 'anvil-state.json') });
  try {
    const ownerKey = ANVIL_KEYS[0];
    const settlerKey = ANVIL_KEYS[1];
    if (existsSync(deploymentPath)) {
      const d = readDeployment(deploymentPath);
      // The state file persists the contracts; a deleted state (or another port) means a fresh deployment.
      if (d.chainId === anvil.chainId && (await hasCode(anvil.rpcUrl, d.registry))) {
        const deployment = { ...d, rpcUrl: anvil.rpcUrl };
        // A deployment from before inference payments: add the escrow once.
        if (!deployment.escrow) {
          deployment.escrow = await deployEscrow(
            chainClients(anvil.rpcUrl, anvil.chainId, ownerKey),
            privateKeyToAccount(settlerKey).address,
            LOCAL_ESCROW_DELAY_SECONDS,
          );
          writeDeployment(deploymentPath, deployment);
        }
        return { deployment, deploymentPath, settlerKey, ownerKey, anvil };
      }
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
