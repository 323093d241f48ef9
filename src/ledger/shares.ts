/**
 * From verified credits to the Merkle root posted on chain. One share token base unit is one verified FLOP
 * (the token has 18 decimals, so one whole share is an exaFLOP of verified training). Leaves are (wallet,
 * cumulative shares) over every settled epoch, so a holder claims once with the latest root and gets what it
 * has not claimed yet; the encoding is @openzeppelin/merkle-tree's StandardMerkleTree ['address', 'uint256'],
 * which the distributor contract checks with OpenZeppelin's MerkleProof.
 */
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { getAddress } from 'viem';

export type Address = `0x${string}`;

export interface ShareLeaf {
  wallet: Address;
  /** Cumulative shares (decimal string: may exceed 2^53). */
  shares: string;
}

export const LEAF_ENCODING = ['address', 'uint256'];

/**
 * Cumulative shares per wallet: every epoch's credits of every peer bound to it. Bindings are permanent, so
 * a wallet's total never shrinks; credits of a peer bound later are counted from the first settlement after
 * its binding. Wallets with nothing are left out.
 */
export function cumulativeShares(
  creditsPerEpoch: ReadonlyArray<ReadonlyMap<string, bigint>>,
  bindings: ReadonlyMap<string, string>,
): ShareLeaf[] {
  const total = new Map<Address, bigint>();
  for (const credits of creditsPerEpoch) {
    for (const [peer, flops] of credits) {
      const wallet = bindings.get(peer);
      if (!wallet || flops <= 0n) continue;
      const w = getAddress(wallet);
      total.set(w, (total.get(w) ?? 0n) + flops);
    }
  }
  return [...total]
    .sort(([a], [b]) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1))
    .map(([wallet, s]) => ({ wallet, shares: s.toString() }));
}

export function shareTree(leaves: readonly ShareLeaf[]): StandardMerkleTree<[string, string]> {
  if (leaves.length === 0) throw new RangeError('no wallet has shares: nothing to settle');
  return StandardMerkleTree.of(
    leaves.map((l) => [l.wallet, l.shares] as [string, string]),
    LEAF_ENCODING,
  );
}

/** The proof of `wallet`'s leaf, or undefined when it has none. */
export function proofFor(
  tree: StandardMerkleTree<[string, string]>,
  wallet: string,
): { shares: string; proof: string[] } | undefined {
  const w = getAddress(wallet);
  for (const [i, v] of tree.entries()) {
    if (getAddress(v[0]) === w) return { shares: v[1], proof: tree.getProof(i) };
  }
  return undefined;
}
