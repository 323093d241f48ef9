/** Data for the Holder page: the coordinator's ledger (react-query) and the chain (wagmi reads and writes). */
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useCallback, useState } from 'react';
import type { Address, Hex } from 'viem';
import { useConfig, useReadContracts } from 'wagmi';
import { waitForTransactionReceipt } from 'wagmi/actions';
import { EpochDistributorAbi, RevenueVaultAbi, ShareTokenAbi, TestTokenAbi } from '../../chain/artifacts.ts';
import type { ModelAddresses } from '../../chain/deployment.ts';
import { holderApi } from './api.ts';
import { explainError } from './errors.ts';

export const api = holderApi();

/** Ledger and chain both move on their own (settlement, deposits by others): poll gently. */
export const POLL_MS = 10_000;

export function useChainInfo() {
  return useQuery({ queryKey: ['holder', 'chain'], queryFn: () => api.chain(), staleTime: Infinity, retry: 1 });
}

export function useWalletView(address: Address | undefined) {
  return useQuery({
    queryKey: ['holder', 'wallet', address],
    queryFn: () => api.wallet(address!),
    enabled: !!address,
    refetchInterval: POLL_MS,
  });
}

export function usePeerBinding(peerId: string | undefined) {
  return useQuery({
    queryKey: ['holder', 'binding', peerId],
    queryFn: () => api.peerBinding(peerId!),
    enabled: !!peerId,
  });
}

export function usePaymentToken(token: Address) {
  const r = useReadContracts({
    contracts: [
      { address: token, abi: TestTokenAbi, functionName: 'symbol' },
      { address: token, abi: TestTokenAbi, functionName: 'decimals' },
    ],
    allowFailure: false,
    query: { staleTime: Infinity },
  });
  return { symbol: r.data?.[0], decimals: r.data?.[1], error: r.error };
}

export interface ModelChainData {
  claimed: bigint;
  balance: bigint;
  totalSupply: bigint;
  symbol: string;
  withdrawableEth: bigint;
  withdrawableToken: bigint;
  totalEthDeposited: bigint;
  totalTokenDeposited: bigint;
  claimEpochClaimable?: boolean;
}

/** One model's on-chain figures for `account`; the list has a fixed shape so results are typed by position. */
export function useModelChain(m: ModelAddresses, account: Address, claimEpoch: number | undefined) {
  const r = useReadContracts({
    contracts: [
      { address: m.distributor, abi: EpochDistributorAbi, functionName: 'claimed', args: [account] },
      { address: m.token, abi: ShareTokenAbi, functionName: 'balanceOf', args: [account] },
      { address: m.token, abi: ShareTokenAbi, functionName: 'totalSupply' },
      { address: m.token, abi: ShareTokenAbi, functionName: 'symbol' },
      { address: m.vault, abi: RevenueVaultAbi, functionName: 'withdrawableEth', args: [account] },
      { address: m.vault, abi: RevenueVaultAbi, functionName: 'withdrawableToken', args: [account] },
      { address: m.vault, abi: RevenueVaultAbi, functionName: 'totalEthDeposited' },
      { address: m.vault, abi: RevenueVaultAbi, functionName: 'totalTokenDeposited' },
      // Epoch 0 never has a root (epochs start at 1): a harmless read when there is no claim.
      {
        address: m.distributor,
        abi: EpochDistributorAbi,
        functionName: 'isClaimable',
        args: [BigInt(claimEpoch ?? 0)],
      },
    ],
    allowFailure: false,
    query: { refetchInterval: POLL_MS },
  });
  const d = r.data;
  const data: ModelChainData | undefined = d && {
    claimed: d[0],
    balance: d[1],
    totalSupply: d[2],
    symbol: d[3],
    withdrawableEth: d[4],
    withdrawableToken: d[5],
    totalEthDeposited: d[6],
    totalTokenDeposited: d[7],
    claimEpochClaimable: claimEpoch === undefined ? undefined : d[8],
  };
  return { data, error: r.error, isLoading: r.isLoading };
}

export interface TxState {
  busy: boolean;
  /** What is happening or what just happened, for the card's role="status" line. */
  status: string;
  error?: string;
}

/**
 * Sends one transaction at a time for a card: wallet prompt → mined → every query refreshed (the ledger and
 * the chain both changed), then reports `done()`'s sentence. A reverted receipt is an error, not a success.
 */
export function useTx() {
  const config = useConfig();
  const queryClient = useQueryClient();
  const [state, setState] = useState<TxState>({ busy: false, status: '' });
  const run = useCallback(
    async (label: string, send: () => Promise<Hex>, done: () => string) => {
      setState({ busy: true, status: `${label}: confirm in your wallet…` });
      try {
        const hash = await send();
        setState({ busy: true, status: `${label}: waiting for transaction ${hash.slice(0, 10)}… to be mined…` });
        const receipt = await waitForTransactionReceipt(config, { hash });
        if (receipt.status !== 'success') throw new Error(`transaction ${hash} reverted`);
        // Everything but /api/chain, whose answer the wagmi config itself is built from.
        await queryClient.invalidateQueries({
          predicate: (q) => !(q.queryKey[0] === 'holder' && q.queryKey[1] === 'chain'),
        });
        setState({ busy: false, status: done() });
      } catch (e) {
        setState({ busy: false, status: '', error: `${label} failed: ${explainError(e)}` });
      }
    },
    [config, queryClient],
  );
  return { ...state, run };
}
