/** One readable sentence for an error from wagmi, viem, the wallet or the coordinator. */
import { BaseError, ContractFunctionRevertedError, UserRejectedRequestError } from 'viem';
import { ApiError } from './api.ts';

/** What each contract's custom errors mean to a holder (names from contracts/*.sol). */
const REVERTS: Record<string, string> = {
  NothingToClaim: 'there is nothing left to claim for this epoch (already claimed)',
  NotClaimable: 'that epoch is not claimable yet (challenge window still open, or revoked)',
  InvalidProof: 'the chain refused the Merkle proof (the coordinator and the chain disagree on the root)',
  NothingToWithdraw: 'there is nothing to withdraw',
  UnknownEpoch: 'the chain has no root for that epoch',
};

export function explainError(e: unknown): string {
  if (e instanceof ApiError) return e.fromCoordinator ? `${e.message} (${e.code})` : e.message;
  if (e instanceof BaseError) {
    if (e.walk((x) => x instanceof UserRejectedRequestError) || (e as { code?: number }).code === 4001)
      return 'You declined the request in your wallet.';
    const revert = e.walk((x) => x instanceof ContractFunctionRevertedError);
    if (revert instanceof ContractFunctionRevertedError) {
      const name = revert.data?.errorName;
      if (name) return `The transaction was refused: ${REVERTS[name] ?? name}.`;
      if (revert.reason) return `The transaction was refused: ${revert.reason}.`;
    }
    if (e.name === 'ProviderNotFoundError')
      return 'No browser wallet found. Install MetaMask (or another Ethereum wallet extension) and reload.';
    return e.shortMessage || e.message.split('\n')[0];
  }
  if ((e as { code?: number } | null)?.code === 4001) return 'You declined the request in your wallet.';
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}
