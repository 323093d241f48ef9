/**
 * Pure arithmetic and wording for the Holder page. Amounts stay bigint until they are printed: a share is
 * 1e18 FLOP of verified work and the token has 18 decimals, so one base unit is one FLOP and every figure
 * shown is exact (formatUnits), with GFLOP alongside as the human scale.
 */
import { formatUnits } from 'viem';
import type { ClaimProof, EpochEntry, WalletModel } from './api.ts';

export const SHARE_DECIMALS = 18;

/** Shares for `pendingFlops` (a JS number from JSON: whole FLOPs, rounded in case the API sends fractions). */
export function flopsToUnits(flops: number): bigint {
  return Number.isFinite(flops) && flops > 0 ? BigInt(Math.round(flops)) : 0n;
}

export function formatShares(units: bigint): string {
  return formatUnits(units, SHARE_DECIMALS);
}

/** 1 base unit = 1 FLOP, so GFLOP = units / 1e9. Secondary figure: rounded for reading, not for accounting. */
export function formatGflop(units: bigint): string {
  if (units === 0n) return '0 GFLOP';
  const g = Number(units) / 1e9;
  const text = g >= 1 ? g.toLocaleString('en-US', { maximumFractionDigits: 2 }) : g.toPrecision(3);
  return `${text} GFLOP`;
}

export function formatToken(units: bigint, decimals: number, symbol: string): string {
  return `${formatUnits(units, decimals)} ${symbol}`;
}

export function shortAddress(a: string): string {
  return a.length > 12 ? `${a.slice(0, 6)}…${a.slice(-4)}` : a;
}

export function shortPeerId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

/** "in 4 min (14:05:09)", "now", "2 h ago"; `at` and `now` are unix seconds. */
export function formatWhen(at: number, now: number, locale?: string): string {
  const d = at - now;
  const clock = new Date(at * 1000).toLocaleString(locale, {
    dateStyle: Math.abs(d) >= 86_400 ? 'medium' : undefined,
    timeStyle: 'medium',
  });
  if (Math.abs(d) < 5) return `now (${clock})`;
  const a = Math.abs(d);
  const span =
    a < 90
      ? `${Math.round(a)} s`
      : a < 5400
        ? `${Math.round(a / 60)} min`
        : a < 129_600
          ? `${Math.round(a / 3600)} h`
          : `${Math.round(a / 86_400)} d`;
  return d > 0 ? `in ${span} (${clock})` : `${span} ago (${clock})`;
}

/** On-chain facts the summary needs; undefined while they load. */
export interface ChainFacts {
  /** distributor.claimed(account): cumulative shares already minted. */
  claimed: bigint;
  /** distributor.isClaimable(claim.epoch); undefined when there is no claim. */
  claimEpochClaimable?: boolean;
}

export interface ShareSummary {
  /** Open epoch, unverified. */
  pending: bigint;
  /** In a posted or about-to-be-posted epoch whose challenge window is still open. */
  waiting: bigint;
  /** When the waiting shares open: unix seconds, or null when their root is not on chain yet. */
  waitingOpensAt: number | null;
  /** Claimable now: claim.cumulative − claimed, when the claim's epoch is claimable on chain. */
  claimable: bigint;
  claimed: bigint;
}

const max = (a: bigint, b: bigint) => (a > b ? a : b);

/**
 * What the wallet holds in one model. The chain decides claimability (the coordinator's status can lag the
 * chain's clock); anything the ledger credits beyond that is "waiting". Cumulative amounts never double count:
 * waiting is measured from what is already claimed or claimable.
 */
export function summarize(m: Pick<WalletModel, 'pendingFlops' | 'epochs' | 'claim'>, chain: ChainFacts): ShareSummary {
  const claimed = chain.claimed;
  const claimBase = m.claim && chain.claimEpochClaimable ? max(BigInt(m.claim.cumulative), claimed) : claimed;
  const claimable = claimBase - claimed;
  const live = m.epochs.filter((e) => e.status !== 'revoked' && BigInt(e.cumulative) > claimBase);
  let waiting = 0n;
  let waitingOpensAt: number | null = null;
  if (live.length > 0) {
    const top = live.reduce((a, b) => (BigInt(b.cumulative) > BigInt(a.cumulative) ? b : a));
    waiting = BigInt(top.cumulative) - claimBase;
    // The earliest of them to open tells the holder when something becomes claimable.
    const opens = live.map((e) => e.claimableAt).filter((t): t is number => t !== null);
    waitingOpensAt = opens.length > 0 ? Math.min(...opens) : null;
  }
  return { pending: flopsToUnits(m.pendingFlops), waiting, waitingOpensAt, claimable, claimed };
}

/** Chart axis scale: the largest power of 1000 below the biggest value, so ticks read 1–999. */
export interface ChartScale {
  /** Plotted value = units / 10^(18 + exponent). */
  exponent: number;
  label: string;
}

const SUPERSCRIPT: Record<string, string> = {
  '-': '⁻',
  '0': '⁰',
  '1': '¹',
  '2': '²',
  '3': '³',
  '4': '⁴',
  '5': '⁵',
  '6': '⁶',
  '7': '⁷',
  '8': '⁸',
  '9': '⁹',
};

export function chartScale(maxUnits: bigint): ChartScale {
  let exponent = 0;
  while (exponent > -18 && maxUnits > 0n && maxUnits < 10n ** BigInt(SHARE_DECIMALS + exponent)) exponent -= 3;
  const sup = String(exponent).replace(/./g, (c) => SUPERSCRIPT[c]);
  return { exponent, label: exponent === 0 ? 'shares' : `shares × 10${sup}` };
}

export interface ChartPoint {
  epoch: number;
  /** Earned in the epoch, scaled. */
  earned: number;
  /** Cumulative after the epoch, scaled. */
  cumulative: number;
  status: EpochEntry['status'];
}

/** Revoked epochs earned nothing: they are left out of the chart (the table still lists them). */
export function chartData(epochs: EpochEntry[]): { points: ChartPoint[]; scale: ChartScale } {
  const kept = epochs.filter((e) => e.status !== 'revoked').sort((a, b) => a.epoch - b.epoch);
  const scale = chartScale(kept.reduce((m, e) => max(m, max(BigInt(e.cumulative), BigInt(e.shares))), 0n));
  const div = 10 ** (SHARE_DECIMALS + scale.exponent);
  // Number() is only for drawing: exact figures are printed from the bigints.
  const points = kept.map((e) => ({
    epoch: e.epoch,
    earned: Number(BigInt(e.shares)) / div,
    cumulative: Number(BigInt(e.cumulative)) / div,
    status: e.status,
  }));
  return { points, scale };
}

export const STATUS_LABELS: Record<EpochEntry['status'], string> = {
  'no-root': 'Settled, nothing to post (no bound wallet earned)',
  'pending-chain': 'Settled, root not on chain yet',
  challenge: 'Challenge window',
  claimable: 'Claimable',
  revoked: 'Revoked',
};

/**
 * An epoch's state for this holder. The chain's word comes first: the coordinator dates the challenge window
 * by its own clock, the contract by the block's, and only the contract's decides a claim.
 */
export function epochState(
  e: EpochEntry,
  claim: ClaimProof | null,
  chain: ChainFacts | undefined,
): { label: string; opensAt: number | null } {
  if (e.status === 'revoked') return { label: STATUS_LABELS.revoked, opensAt: null };
  if (chain && chain.claimed >= BigInt(e.cumulative) && chain.claimed > 0n) return { label: 'Claimed', opensAt: null };
  if (chain?.claimEpochClaimable && claim && e.epoch <= claim.epoch)
    return { label: STATUS_LABELS.claimable, opensAt: null };
  if (e.status === 'claimable' && chain?.claimEpochClaimable === false)
    return { label: STATUS_LABELS.challenge, opensAt: e.claimableAt };
  return { label: STATUS_LABELS[e.status], opensAt: e.status === 'challenge' ? e.claimableAt : null };
}
