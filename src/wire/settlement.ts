/** Settlement answers: the epochs of a model, one epoch with what recomputing its root needs, its receipts. */

/**
 * no-root: settled with nothing to post (no bound wallet earned); pending-chain: settled, root not on chain yet;
 * challenge: posted, inside the delay; claimable; revoked.
 */
export type EpochStatus = 'no-root' | 'pending-chain' | 'challenge' | 'claimable' | 'revoked';

/** One settled epoch as `GET /api/models/:id/epochs` lists it. */
export interface EpochSummary {
  epoch: number;
  closedAt: number;
  /** Receipts of steps up to this one belong to this epoch or an earlier one. */
  throughStep: number;
  /** The Merkle root of the cumulative shares; null when no bound wallet earned. */
  root: string | null;
  txHash: string | null;
  postedAt: number | null;
  /** Unix seconds when the challenge window ends; null until the root is on chain. */
  claimableAt: number | null;
  chainError: string | null;
  status: EpochStatus;
  wallets: number;
  credited: number;
  /** Peers whose receipts this epoch voided. */
  caught: string[];
  /** Audits by result (match, mismatch, …). */
  auditCounts: Record<string, number>;
}

/** A wallet's cumulative shares through an epoch: one Merkle leaf (shares in base units, decimal). */
export interface EpochLeaf {
  wallet: string;
  shares: string;
}

/** `GET /api/models/:id/epochs/:n` (and the answer to closing one): the summary and the published inputs. */
export interface EpochDetail extends EpochSummary {
  leaves: EpochLeaf[];
  verdicts: unknown[];
  audits: unknown[];
  /** The signed wallet bindings the leaves were computed with (src/ledger/binding.ts's PublishedBinding). */
  bindings: unknown[];
}

/** `GET /api/models/:id/epochs/:n/receipts`: one page of an epoch's signed receipts, `R` as the ledger signs them. */
export interface EpochReceiptsPage<R> {
  modelId: string;
  epoch: number;
  receipts: Array<R & { id: number }>;
  /** The `since` cursor of the next page. */
  next: number;
}
