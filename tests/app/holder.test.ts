import { describe, expect, it } from 'vitest';
import { routeOf } from '../../src/app/route.ts';
import type { EpochEntry, WalletModel } from '../../src/app/holder/api.ts';
import {
  chartData,
  chartScale,
  epochState,
  flopsToUnits,
  formatGflop,
  formatShares,
  formatToken,
  formatWhen,
  shortAddress,
  summarize,
} from '../../src/app/holder/shares.ts';

const E18 = 10n ** 18n;

function epoch(
  n: number,
  shares: bigint,
  cumulative: bigint,
  status: EpochEntry['status'],
  claimableAt: number | null = null,
): EpochEntry {
  return {
    epoch: n,
    shares: String(shares),
    cumulative: String(cumulative),
    status,
    claimableAt,
    root: `0x${'ab'.repeat(32)}`,
  };
}

function model(over: Partial<WalletModel>): WalletModel {
  return { modelId: 'm', pendingFlops: 0, epochs: [], claim: null, ...over };
}

describe('holder share summary', () => {
  const epochs = [
    epoch(1, 5n * E18, 5n * E18, 'claimable', 100),
    epoch(2, 3n * E18, 8n * E18, 'claimable', 200),
    epoch(3, 2n * E18, 10n * E18, 'challenge', 900),
  ];
  const claim = { epoch: 2, cumulative: String(8n * E18), proof: [] };

  it(
    'claimable is the claim’s cumulative minus what is already claimed, when the chain says its epoch is ' +
      'claimable',
    () => {
      const s = summarize(model({ epochs, claim, pendingFlops: 1234 }), {
        claimed: 5n * E18,
        claimEpochClaimable: true,
      });
      expect(s).toEqual({
        pending: 1234n,
        claimable: 3n * E18,
        claimed: 5n * E18,
        waiting: 2n * E18,
        waitingOpensAt: 900,
      });
    },
  );

  it('nothing is claimable while the chain still holds the epoch in its challenge window: it all waits', () => {
    const s = summarize(model({ epochs, claim }), { claimed: 5n * E18, claimEpochClaimable: false });
    expect(s.claimable).toBe(0n);
    // Epochs 2 and 3 beyond what was claimed; the earliest to open is epoch 2's.
    expect(s.waiting).toBe(5n * E18);
    expect(s.waitingOpensAt).toBe(200);
  });

  it('after a claim nothing is claimable twice, and revoked epochs never count', () => {
    const withRevoked = [...epochs.slice(0, 2), epoch(3, 2n * E18, 10n * E18, 'revoked', 900)];
    const s = summarize(model({ epochs: withRevoked, claim }), { claimed: 8n * E18, claimEpochClaimable: true });
    expect(s.claimable).toBe(0n);
    expect(s.waiting).toBe(0n);
    expect(s.waitingOpensAt).toBeNull();
  });

  it('a settled epoch whose root is not on chain yet waits with no opening time', () => {
    const s = summarize(model({ epochs: [epoch(1, 7n, 7n, 'pending-chain')] }), { claimed: 0n });
    expect(s).toMatchObject({ waiting: 7n, waitingOpensAt: null, claimable: 0n });
  });

  it('pending shares are the open epoch’s FLOPs (1 FLOP = 1 base unit), never negative or fractional', () => {
    expect(flopsToUnits(2.6e12)).toBe(2_600_000_000_000n);
    expect(flopsToUnits(-5)).toBe(0n);
    expect(flopsToUnits(Number.NaN)).toBe(0n);
    expect(flopsToUnits(10.4)).toBe(10n);
  });
});

describe('holder epoch state', () => {
  const e1 = epoch(1, 5n, 5n, 'challenge', 700);
  const e2 = epoch(2, 3n, 8n, 'challenge', 900);
  const claim = { epoch: 1, cumulative: '5', proof: [] };

  it('follows the chain over the coordinator’s clock', () => {
    expect(epochState(e1, claim, { claimed: 0n, claimEpochClaimable: false })).toEqual({
      label: 'Challenge window',
      opensAt: 700,
    });
    expect(epochState(e1, claim, { claimed: 0n, claimEpochClaimable: true })).toEqual({
      label: 'Claimable',
      opensAt: null,
    });
    expect(epochState(e2, claim, { claimed: 0n, claimEpochClaimable: true })).toEqual({
      label: 'Challenge window',
      opensAt: 900,
    });
    expect(epochState({ ...e1, status: 'claimable' }, claim, { claimed: 0n, claimEpochClaimable: false }).label).toBe(
      'Challenge window',
    );
  });

  it('marks what is claimed, and revoked epochs as revoked', () => {
    expect(epochState(e1, claim, { claimed: 5n, claimEpochClaimable: true }).label).toBe('Claimed');
    expect(epochState(e2, claim, { claimed: 5n, claimEpochClaimable: true }).label).toBe('Challenge window');
    expect(epochState({ ...e2, status: 'revoked' }, claim, { claimed: 8n }).label).toBe('Revoked');
    expect(epochState(epoch(3, 1n, 9n, 'pending-chain'), null, undefined)).toEqual({
      label: 'Settled, root not on chain yet',
      opensAt: null,
    });
  });
});

describe('holder formatting', () => {
  it('prints shares exactly (18 decimals) and GFLOP as the readable scale', () => {
    expect(formatShares(1n)).toBe('0.000000000000000001');
    expect(formatShares(1234n * E18 + 5n)).toBe('1234.000000000000000005');
    expect(formatGflop(0n)).toBe('0 GFLOP');
    expect(formatGflop(2_500_000_000n)).toBe('2.5 GFLOP');
    expect(formatGflop(1_234_567_000_000_000n)).toBe('1,234,567 GFLOP');
    expect(formatGflop(12_345_678n)).toBe('0.0123 GFLOP');
    expect(formatToken(1_500_000n, 6, 'TUSD')).toBe('1.5 TUSD');
  });

  it('shortens addresses and says when a time comes', () => {
    expect(shortAddress('0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266')).toBe('0xf39F…2266');
    expect(formatWhen(1000, 1000, 'en-US')).toMatch(/^now \(/);
    expect(formatWhen(1240, 1000, 'en-US')).toMatch(/^in 4 min \(/);
    expect(formatWhen(1000, 1030, 'en-US')).toMatch(/^30 s ago \(/);
    expect(formatWhen(1000 + 3 * 86_400, 1000, 'en-US')).toMatch(/^in 3 d \(/);
  });
});

describe('holder chart', () => {
  it('scales the axis to the largest power of 1000 under the biggest value', () => {
    expect(chartScale(0n)).toEqual({ exponent: 0, label: 'shares' });
    expect(chartScale(3n * E18)).toEqual({ exponent: 0, label: 'shares' });
    expect(chartScale(E18 - 1n).exponent).toBe(-3);
    expect(chartScale(2_000_000_000_000n)).toEqual({ exponent: -6, label: 'shares × 10⁻⁶' });
    expect(chartScale(1n).exponent).toBe(-18);
  });

  it('plots non-revoked epochs in order: bars per epoch, line cumulative', () => {
    const { points, scale } = chartData([
      epoch(3, 4_000_000_000_000n, 9_000_000_000_000n, 'challenge', 10),
      epoch(1, 5_000_000_000_000n, 5_000_000_000_000n, 'claimable', 5),
      epoch(2, 1_000_000_000_000n, 6_000_000_000_000n, 'revoked', 7),
    ]);
    expect(scale.exponent).toBe(-6);
    expect(points).toEqual([
      { epoch: 1, earned: 5, cumulative: 5, status: 'claimable' },
      { epoch: 3, earned: 4, cumulative: 9, status: 'challenge' },
    ]);
  });
});

describe('holder route', () => {
  it('opens the Holder page at #/holder', () => {
    expect(routeOf('#/holder')).toBe('holder');
    expect(routeOf('#holder?x')).toBe('holder');
    expect(routeOf('#/holders')).toBe('gpu');
  });
});
