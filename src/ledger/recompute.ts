/**
 * Recomputing an epoch's root from what the coordinator publishes — every receipt of epochs 1..n and the
 * bindings the leaves used — trusting nothing: each receipt's signature and each binding's two signatures are
 * checked again, the verdicts re-derived (verdict.ts), the shares re-summed and the tree rebuilt. This is what
 * `npm run verify-epoch` runs; the coordinator's settlement uses the same functions, so an honest coordinator's
 * root is reproduced bit for bit.
 */
import { verifyBinding, type SignedBinding } from './binding.ts';
import { verifyReceiptSignature, type SignedReceipt } from './receipt.ts';
import { cumulativeShares, shareTree, type ShareLeaf } from './shares.ts';
import { judgeEpoch, sortReceipts } from './verdict.ts';

export interface PublishedBinding extends SignedBinding {
  /** When the coordinator recorded it (ms): the signature was checked against its expiry then. */
  at: number;
}

export interface Recomputed {
  root: string | null;
  leaves: ShareLeaf[];
  receipts: number;
  /** Problems found in the published data (a forged receipt or binding means the publisher cannot be trusted). */
  problems: string[];
}

export async function recomputeEpoch(
  stages: number,
  receiptsByEpoch: SignedReceipt[][],
  bindings: PublishedBinding[],
  chainId: number,
): Promise<Recomputed> {
  const problems: string[] = [];
  const credits: Map<string, bigint>[] = [];
  let count = 0;
  for (let e = 0; e < receiptsByEpoch.length; e++) {
    const good: SignedReceipt[] = [];
    for (const r of receiptsByEpoch[e]) {
      if (await verifyReceiptSignature(r)) good.push(r);
      else
        problems.push(
          `epoch ${e + 1}: receipt of ${r.peerId} for stage ${r.stage} step ${r.step} micro-batch ${r.micro} ` +
            `has a bad signature`,
        );
    }
    count += good.length;
    const { verdicts } = judgeEpoch(sortReceipts(good), stages);
    credits.push(new Map(verdicts.map((v) => [v.peerId, BigInt(v.credited)])));
  }
  const bound = new Map<string, string>();
  for (const b of bindings) {
    try {
      const m = await verifyBinding(b, chainId, Math.floor(b.at / 1000));
      bound.set(m.peerId, m.wallet);
    } catch (e) {
      problems.push(`binding of ${b.peerId} to ${b.wallet}: ${(e as Error).message}`);
    }
  }
  const leaves = cumulativeShares(credits, bound);
  return { root: leaves.length > 0 ? shareTree(leaves).root : null, leaves, receipts: count, problems };
}
