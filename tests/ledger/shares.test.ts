import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { encodeAbiParameters, keccak256, concat } from 'viem';
import { describe, expect, it } from 'vitest';
import { cumulativeShares, LEAF_ENCODING, proofFor, shareTree } from '../../src/ledger/shares.ts';
import { judgeEpoch } from '../../src/ledger/verdict.ts';
import type { WorkReceipt } from '../../src/ledger/receipt.ts';

const A = '0x1111111111111111111111111111111111111111';
const B = '0x2222222222222222222222222222222222222222';
const H = (c: string) => '0x' + c.repeat(64);
const r = (peerId: string, over: Partial<WorkReceipt>): WorkReceipt => ({
  model: 'm',
  round: 0,
  stage: 0,
  replica: 0,
  replicas: 2,
  step: 0,
  micro: 0,
  kind: 'train',
  flops: 300,
  inputHash: H('1'),
  outputHash: H('2'),
  peerId,
  ...over,
});

describe('epoch verdicts', () => {
  it('credits honest work and audits that compared; voids a caught peer; an input mismatch blames nobody', () => {
    const receipts = [
      r('p0', { micro: 0 }),
      r('p1', { micro: 1, replica: 1 }),
      r('p0', { micro: 2 }),
      r('p1', { micro: 3, replica: 1, outputHash: H('bad') }),
      r('p1', { micro: 0, replica: 1, kind: 'audit', flops: 100 }), // matches p0's micro 0
      r('p0', { micro: 3, kind: 'audit', flops: 100 }), // p1's micro 3 output differs: caught
      r('p1', { micro: 2, replica: 1, kind: 'audit', flops: 100, inputHash: H('9') }), // sender fed different bytes
      r('p0', { micro: 1, step: 5, kind: 'audit', flops: 100 }), // nothing to compare with
    ];
    const j = judgeEpoch(receipts, 1);
    expect(j.audits.map((a) => a.result)).toEqual(['match', 'mismatch', 'input-mismatch', 'unmatched']);
    const p0 = j.verdicts.find((v) => v.peerId === 'p0')!;
    const p1 = j.verdicts.find((v) => v.peerId === 'p1')!;
    expect(p0).toMatchObject({ caught: false, trainFlops: 600, auditFlops: 100, credited: 700, passed: 1, failed: 0 });
    expect(p1).toMatchObject({ caught: true, credited: 0, passed: 0, failed: 1 });
  });

  it('in a multi-stage model, train receipts count only when the neighbouring stage corroborates them', () => {
    const chain = [
      r('a', { stage: 0, replicas: 1, outputHash: H('5') }),
      r('b', { stage: 1, replicas: 1, inputHash: H('5'), outputHash: H('6') }),
      r('a', { stage: 0, replicas: 1, step: 1, outputHash: H('7') }), // stage 1 never received step 1's activation
      r('b', { stage: 1, replicas: 1, step: 2, inputHash: H('8') }), // invented: no stage 0 work sent it
    ];
    const j = judgeEpoch(chain, 2);
    expect(j.verdicts.find((v) => v.peerId === 'a')).toMatchObject({ trainFlops: 300, unconfirmed: 1, credited: 300 });
    expect(j.verdicts.find((v) => v.peerId === 'b')).toMatchObject({ trainFlops: 300, unconfirmed: 1, credited: 300 });
  });
});

describe('share trees', () => {
  it('cumulative shares sum every epoch of every bound peer; leaves verify with the on-chain leaf hash', () => {
    const bindings = new Map([
      ['p0', A],
      ['p1', B],
      ['p2', A],
    ]);
    const leaves = cumulativeShares(
      [
        new Map([
          ['p0', 5n],
          ['p1', 7n],
        ]),
        new Map([
          ['p2', 2n ** 60n],
          ['unbound', 9n],
        ]),
      ],
      bindings,
    );
    expect(leaves).toEqual([
      { wallet: A, shares: (5n + 2n ** 60n).toString() },
      { wallet: B, shares: '7' },
    ]);
    const tree = shareTree(leaves);
    const p = proofFor(tree, B.toLowerCase())!;
    expect(p.shares).toBe('7');
    expect(StandardMerkleTree.verify(tree.root, LEAF_ENCODING, [B, '7'], p.proof)).toBe(true);
    expect(StandardMerkleTree.verify(tree.root, LEAF_ENCODING, [B, '8'], p.proof)).toBe(false);
    // The contract's leaf: keccak256(bytes.concat(keccak256(abi.encode(account, amount)))).
    const leaf = keccak256(
      concat([keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'uint256' }], [B, 7n]))]),
    );
    expect(tree.leafHash([B, '7'])).toBe(leaf);
    expect(proofFor(tree, '0x3333333333333333333333333333333333333333')).toBeUndefined();
    expect(() => shareTree([])).toThrow(/nothing to settle/);
  });
});
