import { describe, expect, it } from 'vitest';
import { epochStatus } from '../../src/coordinator/ledger.ts';
import type { EpochRow } from '../../src/coordinator/ledger-store.ts';

const epoch = (over: Partial<EpochRow>): EpochRow => ({
  modelId: 'm',
  epoch: 1,
  closedAt: 0,
  throughStep: 9,
  root: `0x${'ab'.repeat(32)}`,
  leaves: [],
  verdicts: [],
  audits: [],
  bindings: [],
  txHash: null,
  postedAt: null,
  claimableAt: null,
  chainError: null,
  ...over,
});

describe('epochStatus', () => {
  it('says an epoch without a root has nothing to post, instead of waiting for the chain forever', () => {
    expect(epochStatus(epoch({ root: null }), 100)).toBe('no-root');
    expect(epochStatus(epoch({}), 100)).toBe('pending-chain');
    expect(epochStatus(epoch({ txHash: '0x1', postedAt: 1, claimableAt: 200 }), 100)).toBe('challenge');
    expect(epochStatus(epoch({ txHash: '0x1', postedAt: 1, claimableAt: 50 }), 100)).toBe('claimable');
  });
});
