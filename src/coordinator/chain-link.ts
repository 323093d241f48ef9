/**
 * The coordinator's hold on the chain: where the contracts are (a Deployment, shown to apps as ChainInfo), the
 * settlement key that posts roots, and, where this coordinator also owns the registry (a local chain), the
 * key that registers new models on chain. Any EVM JSON-RPC endpoint works: nothing here is anvil-specific.
 */
import { TransactionReceiptNotFoundError, type Hex } from 'viem';
import {
  chainClients,
  escrowAccount,
  escrowCharge,
  escrowCharged,
  findChargeTx,
  findRootTx,
  latestEpochOf,
  postRoot,
  readRoot,
  type ChainClients,
} from '../chain/client.ts';
import { registerModelOnChain, writeDeployment } from '../chain/deploy.ts';
import type { Deployment } from '../chain/deployment.ts';
import type { ChainInfo } from './ledger.ts';
import type { UsageCharger } from './payments.ts';
import type { RootOnChain, RootPoster } from './settlement.ts';
import type { Logger } from './types.ts';

export interface ChainLinkOptions {
  deployment: Deployment;
  /** Posts roots (must be the distributors' settler). */
  settlerKey: Hex;
  /** The registry owner's key: models registered with the coordinator are registered on chain too. */
  ownerKey?: Hex;
  /** Where the deployment file lives (rewritten when a model is added). */
  deploymentPath?: string;
  log: Logger;
}

export class ChainLink implements RootPoster, UsageCharger {
  private readonly o: ChainLinkOptions;
  private registering = new Map<string, Promise<void>>();
  /** Clients made once: the escrow is read on every paid request. */
  private readonly reader: ChainClients;
  private readonly settler: ChainClients;

  constructor(opts: ChainLinkOptions) {
    this.o = opts;
    this.reader = chainClients(opts.deployment.rpcUrl, opts.deployment.chainId);
    this.settler = chainClients(opts.deployment.rpcUrl, opts.deployment.chainId, opts.settlerKey);
  }

  info(): ChainInfo {
    const d = this.o.deployment;
    return {
      rpcUrl: d.rpcUrl,
      chainId: d.chainId,
      registry: d.registry,
      paymentToken: d.paymentToken,
      escrow: d.escrow,
      models: { ...d.models },
    };
  }

  /** Registers the model on chain unless it is there (needs the owner key). Idempotent, one attempt at a time. */
  ensureModel(modelId: string, name: string): Promise<void> {
    if (this.o.deployment.models[modelId]) return Promise.resolve();
    const { ownerKey, deployment, deploymentPath, log } = this.o;
    if (!ownerKey)
      return Promise.reject(
        new Error(`model ${modelId} is not registered on chain and this coordinator holds no registry owner key`),
      );
    let p = this.registering.get(modelId);
    if (!p) {
      const symbol =
        'T' +
        modelId
          .replace(/[^a-z0-9]/g, '')
          .slice(0, 7)
          .toUpperCase();
      p = registerModelOnChain(deployment, ownerKey, { modelId, name: `Tessera ${name}`, symbol }).then((m) => {
        if (deploymentPath) writeDeployment(deploymentPath, deployment);
        log(
          'info',
          `model ${modelId} registered on chain: token ${m.token}, vault ${m.vault}, distributor ${m.distributor}`,
        );
      });
      p = p.finally(() => this.registering.delete(modelId));
      this.registering.set(modelId, p);
    }
    return p;
  }

  /** What a requester may still spend from its escrow deposit (balance minus an announced withdrawal). */
  async escrowAvailable(payer: `0x${string}`): Promise<bigint> {
    const { escrow } = this.o.deployment;
    if (!escrow) throw new Error('this deployment has no inference escrow');
    const a = await escrowAccount(this.reader, escrow, payer);
    return a.balance > a.pendingWithdrawal ? a.balance - a.pendingWithdrawal : 0n;
  }

  /** Charges metered usage from a requester's deposit into the model's vault (settlement key). */
  async charge(payer: `0x${string}`, modelId: string, amount: bigint, usage: `0x${string}`): Promise<string> {
    const { escrow } = this.o.deployment;
    if (!escrow) throw new Error('this deployment has no inference escrow');
    if (!this.o.deployment.models[modelId]) await this.ensureModel(modelId, modelId);
    return (await escrowCharge(this.settler, escrow, payer, this.o.deployment.models[modelId].vault, amount, usage))
      .transactionHash;
  }

  async postRoot(
    modelId: string,
    epoch: number,
    root: `0x${string}`,
  ): Promise<{ txHash: string; claimableAt: number }> {
    if (!this.o.deployment.models[modelId]) await this.ensureModel(modelId, modelId);
    const m = this.o.deployment.models[modelId];
    const receipt = await postRoot(this.settler, m, BigInt(epoch), root);
    const info = await readRoot(this.settler, m, BigInt(epoch));
    return { txHash: receipt.transactionHash, claimableAt: Number(info.claimableAt) };
  }

  async rootOnChain(modelId: string, epoch: number): Promise<RootOnChain | null> {
    const m = this.o.deployment.models[modelId];
    if (!m) return null;
    const [info, latest] = await Promise.all([readRoot(this.reader, m, BigInt(epoch)), latestEpochOf(this.reader, m)]);
    const posted = info.postedAt > 0n;
    return {
      root: posted ? info.root : null,
      latestEpoch: Number(latest),
      txHash: posted ? await findRootTx(this.reader, m, BigInt(epoch), this.fromBlock()) : null,
      claimableAt: Number(info.claimableAt),
    };
  }

  /** Whether the escrow charged the usage identifier, and in which transaction when its log is found. */
  async usageCharged(payer: `0x${string}`, usage: `0x${string}`): Promise<{ charged: boolean; txHash: string | null }> {
    const { escrow } = this.o.deployment;
    if (!escrow) throw new Error('this deployment has no inference escrow');
    if (!(await escrowCharged(this.reader, escrow, usage))) return { charged: false, txHash: null };
    return { charged: true, txHash: await findChargeTx(this.reader, escrow, payer, usage, this.fromBlock()) };
  }

  async txKnown(txHash: string): Promise<boolean> {
    try {
      await this.reader.publicClient.getTransactionReceipt({ hash: txHash as Hex });
      return true;
    } catch (e) {
      if (e instanceof TransactionReceiptNotFoundError) return false;
      throw e;
    }
  }

  private fromBlock(): bigint {
    return BigInt(this.o.deployment.deployBlock ?? 0);
  }
}
