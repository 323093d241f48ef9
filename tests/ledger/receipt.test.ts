import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import {
  parseReceipt,
  ReceiptError,
  signReceipt,
  verifyReceiptSignature,
  type WorkReceipt,
} from '../../src/ledger/receipt.ts';

const H = (c: string) => '0x' + c.repeat(64);

async function peer() {
  const key = await generateKeyPair('Ed25519');
  return { key, id: peerIdFromPrivateKey(key).toString() };
}

const receipt = (peerId: string, over: Partial<WorkReceipt> = {}): WorkReceipt => ({
  model: 'tiny',
  round: 2,
  stage: 1,
  replica: 0,
  replicas: 2,
  step: 7,
  micro: 4,
  kind: 'train',
  flops: 123456,
  inputHash: H('a'),
  outputHash: H('b'),
  peerId,
  ...over,
});

describe('work receipts', () => {
  it('a receipt signed by its peer verifies; any changed field, another key or a bad peer id does not', async () => {
    const a = await peer();
    const b = await peer();
    const signed = await signReceipt(a.key, receipt(a.id));
    expect(await verifyReceiptSignature(signed)).toBe(true);
    expect(parseReceipt(JSON.parse(JSON.stringify(signed)))).toEqual(signed);
    for (const [field, value] of [
      ['flops', 999999],
      ['step', 8],
      ['outputHash', H('c')],
      ['kind', 'audit'],
      ['round', 3],
    ] as const) {
      expect(await verifyReceiptSignature({ ...signed, [field]: value }), field).toBe(false);
    }
    // Signed by b but claiming to be a's work.
    const forged = await signReceipt(b.key, receipt(a.id));
    expect(await verifyReceiptSignature(forged)).toBe(false);
    expect(await verifyReceiptSignature({ ...signed, peerId: 'QmNotAPeerIdAtAllxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' })).toBe(
      false,
    );
  });

  it('malformed receipts are refused with the field at fault', async () => {
    const a = await peer();
    const signed = await signReceipt(a.key, receipt(a.id));
    const cases: Array<[unknown, RegExp]> = [
      [null, /JSON object/],
      [{ ...signed, flops: 1.5 }, /flops must be an integer/],
      [{ ...signed, flops: 0 }, /flops must be an integer ≥ 1/],
      [{ ...signed, inputHash: '0x12' }, /inputHash must match/],
      [{ ...signed, kind: 'mine' }, /kind must be one of/],
      [{ ...signed, bonus: 1 }, /unknown receipt field/],
      [{ ...signed, micro: 5 }, /belongs to replica 1, not 0/],
      [{ ...signed, kind: 'audit' }, /cannot audit its own/],
      [{ ...signed, replica: 2 }, /replica 2 of only 2/],
      [{ ...signed, signature: '0xdead' }, /signature must match/],
    ];
    for (const [v, re] of cases) expect(() => parseReceipt(v)).toThrow(re);
    expect(() => parseReceipt({ ...signed, step: -1 })).toThrow(ReceiptError);
  });
});
