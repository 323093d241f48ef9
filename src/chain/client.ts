/**
 * Browser-safe viem helpers for the coordinator, CLIs and the app: clients for a chain given by URL, and one
 * function per contract call. Every write is simulated first (so a revert surfaces with its custom error name
 * before anything is sent), then sent, and resolves with the mined receipt.
 */
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  type Abi,
  type Account,
  type Address,
  type Chain,
  type Hex,
  type HttpTransport,
  type PublicClient,
  type TransactionReceipt,
  type WalletClient,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import {
  EpochDistributorAbi,
  InferenceEscrowAbi,
  ModelRegistryAbi,
  RevenueVaultAbi,
  ShareTokenAbi,
  TestTokenAbi,
} from './artifacts.ts';
import { TesseraError } from '../errors.ts';
import type { ModelAddresses } from './deployment.ts';

export type ChainClients = {
  chain: Chain;
  publicClient: PublicClient<HttpTransport, Chain>;
  /** Present when a key was given. */
  walletClient?: WalletClient<HttpTransport, Chain, Account>;
  account?: Account;
};

/** A chain object whose default RPC URL is the given one (wagmi's connectors send there). */
export function localChain(rpcUrl: string, chainId: number): Chain {
  return defineChain({
    id: chainId,
    name: chainId === 31337 ? 'Anvil' : `Chain ${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

export function chainClients(rpcUrl: string, chainId: number, key?: Hex): ChainClients {
  const chain = localChain(rpcUrl, chainId);
  // Auto-mined local blocks: poll receipts quickly instead of viem's default 4 s.
  const publicClient = createPublicClient({ chain, transport: http(rpcUrl), pollingInterval: 50 });
  if (!key) return { chain, publicClient };
  const account = privateKeyToAccount(key);
  const walletClient = createWalletClient({ chain, transport: http(rpcUrl), account });
  return { chain, publicClient, walletClient, account };
}

/** A write that reverted (in simulation or on chain); errorName is the contract's custom error when known. */
export class ChainWriteError extends TesseraError {
  readonly functionName: string;
  readonly errorName: string | undefined;
  readonly errorArgs: readonly unknown[] | undefined;
  readonly txHash: Hex | undefined;
  constructor(functionName: string, message: string, errorName?: string, errorArgs?: readonly unknown[], txHash?: Hex) {
    super('chain-write', message);
    this.functionName = functionName;
    this.errorName = errorName;
    this.errorArgs = errorArgs;
    this.txHash = txHash;
  }
}

/** Every custom error of every Tessera contract (incl. OZ's), so a revert bubbling up from a callee decodes too. */
const ALL_ERRORS: Abi = (() => {
  const seen = new Map<string, Abi[number]>();
  for (const abi of [
    ModelRegistryAbi,
    EpochDistributorAbi,
    RevenueVaultAbi,
    ShareTokenAbi,
    TestTokenAbi,
    InferenceEscrowAbi,
  ] as readonly Abi[]) {
    for (const item of abi)
      if (item.type === 'error') seen.set(`${item.name}(${item.inputs.map((i) => i.type).join(',')})`, item);
  }
  return [...seen.values()];
})();

type WriteRequest = { address: Address; abi: Abi; functionName: string; args?: readonly unknown[]; value?: bigint };

function revertError(functionName: string, e: unknown): ChainWriteError {
  if (e instanceof BaseError) {
    const rev = e.walk((x) => x instanceof ContractFunctionRevertedError);
    if (rev instanceof ContractFunctionRevertedError) {
      const name = rev.data?.errorName ?? (rev.reason ? 'Error' : undefined);
      const args = rev.data?.args ?? (rev.reason ? [rev.reason] : undefined);
      const shown = name ? `${name}(${(args ?? []).map(String).join(', ')})` : `unknown error ${rev.raw ?? ''}`;
      return new ChainWriteError(functionName, `${functionName} reverted: ${shown}`, name, args);
    }
    return new ChainWriteError(functionName, `${functionName} failed: ${e.shortMessage}`);
  }
  return new ChainWriteError(functionName, `${functionName} failed: ${(e as Error)?.message ?? String(e)}`);
}

/** Simulates, sends and waits for the receipt; throws ChainWriteError with the revert reason on failure. */
export async function sendWrite(c: ChainClients, req: WriteRequest): Promise<TransactionReceipt> {
  if (!c.walletClient || !c.account)
    throw new Error(`${req.functionName}: no key given to chainClients, cannot send transactions`);
  const params = { ...req, abi: [...req.abi, ...ALL_ERRORS], account: c.account, chain: c.chain };
  let hash: Hex;
  try {
    // viem's generics need a literal ABI; these requests are built from the typed artifacts below.
    const { request } = await c.publicClient.simulateContract(
      params as Parameters<typeof c.publicClient.simulateContract>[0],
    );
    hash = await c.walletClient.writeContract(request as Parameters<typeof c.walletClient.writeContract>[0]);
  } catch (e) {
    throw revertError(req.functionName, e);
  }
  const receipt = await c.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success')
    throw new ChainWriteError(
      req.functionName,
      `${req.functionName} reverted on chain (tx ${hash})`,
      undefined,
      undefined,
      hash,
    );
  return receipt;
}

export function postRoot(
  c: ChainClients,
  model: ModelAddresses,
  epoch: bigint,
  root: Hex,
): Promise<TransactionReceipt> {
  return sendWrite(c, {
    address: model.distributor,
    abi: EpochDistributorAbi,
    functionName: 'postRoot',
    args: [epoch, root],
  });
}

export function revokeRoot(c: ChainClients, model: ModelAddresses, epoch: bigint): Promise<TransactionReceipt> {
  return sendWrite(c, {
    address: model.distributor,
    abi: EpochDistributorAbi,
    functionName: 'revokeRoot',
    args: [epoch],
  });
}

export type RootInfo = { root: Hex; postedAt: bigint; revoked: boolean; claimableAt: bigint; claimable: boolean };

/** An epoch's root (zero root and postedAt 0 when never posted) and whether it can be claimed now. */
export async function readRoot(c: ChainClients, model: ModelAddresses, epoch: bigint): Promise<RootInfo> {
  const d = { address: model.distributor, abi: EpochDistributorAbi } as const;
  const [[root, postedAt, revoked], delay, claimable] = await Promise.all([
    c.publicClient.readContract({ ...d, functionName: 'roots', args: [epoch] }),
    c.publicClient.readContract({ ...d, functionName: 'challengeDelay' }),
    c.publicClient.readContract({ ...d, functionName: 'isClaimable', args: [epoch] }),
  ]);
  return { root, postedAt: BigInt(postedAt), revoked, claimableAt: BigInt(postedAt) + BigInt(delay), claimable };
}

/**
 * The transaction that posted `epoch`'s root (from the RootPosted log; null when none is found), for a database
 * that learns from the chain that a root it sent was mined. `fromBlock`: where to start the scan.
 */
export async function findRootTx(
  c: ChainClients,
  model: ModelAddresses,
  epoch: bigint,
  fromBlock = 0n,
): Promise<Hex | null> {
  const logs = await c.publicClient.getContractEvents({
    address: model.distributor,
    abi: EpochDistributorAbi,
    eventName: 'RootPosted',
    args: { epoch },
    fromBlock,
  });
  return logs.at(-1)?.transactionHash ?? null;
}

export function latestEpochOf(c: ChainClients, model: ModelAddresses): Promise<bigint> {
  return c.publicClient.readContract({
    address: model.distributor,
    abi: EpochDistributorAbi,
    functionName: 'latestEpoch',
  });
}

export type ShareClaim = { epoch: bigint; account: Address; cumulativeShares: bigint; proof: readonly Hex[] };

/** Mints `cumulativeShares - claimedOf(account)` to the account; the sender may be anyone. */
export function claimShares(c: ChainClients, model: ModelAddresses, claim: ShareClaim): Promise<TransactionReceipt> {
  return sendWrite(c, {
    address: model.distributor,
    abi: EpochDistributorAbi,
    functionName: 'claim',
    args: [claim.epoch, claim.account, claim.cumulativeShares, claim.proof],
  });
}

export function depositEth(c: ChainClients, model: ModelAddresses, amountWei: bigint): Promise<TransactionReceipt> {
  return sendWrite(c, { address: model.vault, abi: RevenueVaultAbi, functionName: 'depositEth', value: amountWei });
}

/** Approves the vault for `amount` of its payment token when the allowance is short, then deposits. */
export async function depositToken(
  c: ChainClients,
  model: ModelAddresses,
  amount: bigint,
): Promise<TransactionReceipt> {
  const paymentToken = await c.publicClient.readContract({
    address: model.vault,
    abi: RevenueVaultAbi,
    functionName: 'paymentToken',
  });
  const owner = c.account?.address;
  if (!owner) throw new Error('depositToken: no key given to chainClients, cannot send transactions');
  const allowance = await c.publicClient.readContract({
    address: paymentToken,
    abi: TestTokenAbi,
    functionName: 'allowance',
    args: [owner, model.vault],
  });
  if (allowance < amount)
    await sendWrite(c, {
      address: paymentToken,
      abi: TestTokenAbi,
      functionName: 'approve',
      args: [model.vault, amount],
    });
  return sendWrite(c, { address: model.vault, abi: RevenueVaultAbi, functionName: 'depositToken', args: [amount] });
}

/** What `account` can withdraw now: ETH in wei and payment token in its base units. */
export async function withdrawableOf(
  c: ChainClients,
  model: ModelAddresses,
  account: Address,
): Promise<{ eth: bigint; token: bigint }> {
  const v = { address: model.vault, abi: RevenueVaultAbi } as const;
  const [eth, token] = await Promise.all([
    c.publicClient.readContract({ ...v, functionName: 'withdrawableEth', args: [account] }),
    c.publicClient.readContract({ ...v, functionName: 'withdrawableToken', args: [account] }),
  ]);
  return { eth, token };
}

export function withdrawEth(c: ChainClients, model: ModelAddresses): Promise<TransactionReceipt> {
  return sendWrite(c, { address: model.vault, abi: RevenueVaultAbi, functionName: 'withdrawEth' });
}

export function withdrawToken(c: ChainClients, model: ModelAddresses): Promise<TransactionReceipt> {
  return sendWrite(c, { address: model.vault, abi: RevenueVaultAbi, functionName: 'withdrawToken' });
}

export function shareBalance(c: ChainClients, model: ModelAddresses, account: Address): Promise<bigint> {
  return c.publicClient.readContract({
    address: model.token,
    abi: ShareTokenAbi,
    functionName: 'balanceOf',
    args: [account],
  });
}

export function claimedOf(c: ChainClients, model: ModelAddresses, account: Address): Promise<bigint> {
  return c.publicClient.readContract({
    address: model.distributor,
    abi: EpochDistributorAbi,
    functionName: 'claimed',
    args: [account],
  });
}

// Inference escrow: requesters' deposits, charged by the settlement key into model vaults.

export function escrowDeposit(c: ChainClients, escrow: Address, amountWei: bigint): Promise<TransactionReceipt> {
  return sendWrite(c, { address: escrow, abi: InferenceEscrowAbi, functionName: 'deposit', value: amountWei });
}

/** A requester's balance in the escrow and the part it announced to withdraw (unavailable for new requests). */
export async function escrowAccount(
  c: ChainClients,
  escrow: Address,
  payer: Address,
): Promise<{ balance: bigint; pendingWithdrawal: bigint; unlockAt: bigint }> {
  const e = { address: escrow, abi: InferenceEscrowAbi } as const;
  const [balance, pendingWithdrawal, unlockAt] = await Promise.all([
    c.publicClient.readContract({ ...e, functionName: 'balanceOf', args: [payer] }),
    c.publicClient.readContract({ ...e, functionName: 'pendingWithdrawal', args: [payer] }),
    c.publicClient.readContract({ ...e, functionName: 'unlockAt', args: [payer] }),
  ]);
  return { balance, pendingWithdrawal, unlockAt: BigInt(unlockAt) };
}

/** Settlement key only: moves `amount` of `payer`'s deposit into `vault` as revenue. */
export function escrowCharge(
  c: ChainClients,
  escrow: Address,
  payer: Address,
  vault: Address,
  amount: bigint,
  usage: Hex,
): Promise<TransactionReceipt> {
  return sendWrite(c, {
    address: escrow,
    abi: InferenceEscrowAbi,
    functionName: 'charge',
    args: [payer, vault, amount, usage],
  });
}

/** Whether the escrow has charged the usage identifier (it charges each one at most once). */
export function escrowCharged(c: ChainClients, escrow: Address, usage: Hex): Promise<boolean> {
  return c.publicClient.readContract({
    address: escrow,
    abi: InferenceEscrowAbi,
    functionName: 'charged',
    args: [usage],
  });
}

/** The transaction that charged `usage` (from the Charged log; null when none is found). */
export async function findChargeTx(c: ChainClients, escrow: Address, payer: Address, usage: Hex, fromBlock = 0n) {
  const logs = await c.publicClient.getContractEvents({
    address: escrow,
    abi: InferenceEscrowAbi,
    eventName: 'Charged',
    args: { payer },
    fromBlock,
  });
  return logs.find((l) => l.args.usage === usage)?.transactionHash ?? null;
}

export function escrowRequestWithdrawal(c: ChainClients, escrow: Address, amount: bigint): Promise<TransactionReceipt> {
  return sendWrite(c, { address: escrow, abi: InferenceEscrowAbi, functionName: 'requestWithdrawal', args: [amount] });
}

export function escrowWithdraw(c: ChainClients, escrow: Address): Promise<TransactionReceipt> {
  return sendWrite(c, { address: escrow, abi: InferenceEscrowAbi, functionName: 'withdraw' });
}
