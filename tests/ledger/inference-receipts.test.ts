import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { beforeAll, describe, expect, it } from 'vitest';
import { bytesOf, checkHopReceipt, hopReceipt, type HopContext } from '../../src/infer/hop-receipt.ts';
import { parseReceipt, signReceipt, verifyReceiptSignature } from '../../src/ledger/receipt.ts';
import { SKETCH_SIZE, sketchesAgree, sketchOf } from '../../src/ledger/sketch.ts';
import { judgeEpoch } from '../../src/ledger/verdict.ts';
import { Rng } from '../../src/ops/rng.ts';

/** Inference hops as ledger work: sketches, signed hop receipts, the requester's check, and the verdict. */
describe('inference receipts', () => {
  const rng = new Rng(11);
  const output = rng.f32(4096, -3, 3);
  const input = bytesOf(rng.f32(4096));
  let keys: PrivateKey[];
  let ids: string[];
  const ctx = (i: number, replica: number, step = 5, sessionStep = step): HopContext => ({
    model: 'm',
    round: 2,
    stage: 1,
    replica,
    replicas: 2,
    step,
    sessionStep,
    peerId: ids[i],
  });

  beforeAll(async () => {
    keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')));
    ids = keys.map((k) => peerIdFromPrivateKey(k).toString());
  });

  it('sketches agree through float32 noise of another runtime and disagree on a wrong output', () => {
    const a = sketchOf(output, 'unit');
    expect(a).toHaveLength(SKETCH_SIZE);
    expect(sketchOf(output, 'unit')).toEqual(a); // deterministic
    expect(sketchesAgree(sketchOf(output, 'other'), a)).toBe(false); // the seed picks the projections
    // Relative noise of 1e-6 per element (what ORT vs WGSL differ by) keeps them equal within tolerance.
    const noisy = output.map((v) => v * (1 + 1e-6 * rng.uniform()));
    expect(sketchesAgree(sketchOf(noisy, 'unit'), a)).toBe(true);
    // One element wrong by 1.0, a shuffled output, and a scaled output are all caught.
    const one = output.slice();
    one[1234] += 1;
    expect(sketchesAgree(sketchOf(one, 'unit'), a)).toBe(false);
    const shuffled = output.slice().reverse();
    expect(sketchesAgree(sketchOf(shuffled, 'unit'), a)).toBe(false);
    expect(
      sketchesAgree(
        sketchOf(
          output.map((v) => v * 1.01),
          'unit',
        ),
        a,
      ),
    ).toBe(false);
    // Projections onto ±1 vectors / √n: a one-hot vector gives ±1/√n in every component, and it is linear.
    const e = new Float32Array(16);
    e[5] = 1;
    expect(sketchOf(e, 'tiny').map(Math.abs)).toEqual(Array(SKETCH_SIZE).fill(Math.fround(0.25)));
    const u = rng.f32(16);
    const v = rng.f32(16);
    const sum = sketchOf(
      u.map((x, i) => x + v[i]),
      'lin',
    );
    sketchOf(u, 'lin').forEach((x, k) => expect(x + sketchOf(v, 'lin')[k]).toBeCloseTo(sum[k], 5));
  });

  it('a hop receipt is signed by the holder, parses, and the requester checks it against the bytes', async () => {
    const r = await hopReceipt(keys[0], ctx(0, 0), { unit: 42, audit: false, flops: 1000, input, output });
    expect(r.kind).toBe('infer');
    expect(await verifyReceiptSignature(r)).toBe(true);
    expect(parseReceipt(JSON.parse(JSON.stringify(r)))).toEqual(r);
    // the sketch is signed
    expect(await verifyReceiptSignature({ ...r, sketch: r.sketch!.map((v) => v + 1) })).toBe(false);
    const expect0 = { model: 'm', stage: 1, unit: 42, audit: false, input, output };
    expect(checkHopReceipt(r, expect0)).toBeNull();
    expect(checkHopReceipt(r, { ...expect0, unit: 43 })).toMatch(/not the hop asked for/);
    expect(checkHopReceipt(r, { ...expect0, audit: true })).toMatch(/kind infer does not match/);
    expect(checkHopReceipt(r, { ...expect0, input: bytesOf(Float32Array.of(1)) })).toMatch(/input hash/);
    const other = output.slice();
    other[0] += 1e-3;
    expect(checkHopReceipt(r, { ...expect0, output: other })).toMatch(/output hash/);
    // A receipt whose sketch describes another output than its hash does is refused too.
    const lying = await signReceipt(keys[0], { ...r, sketch: sketchOf(other, 'm/infer/1/42') });
    expect(checkHopReceipt(lying, expect0)).toMatch(/sketch is not of the output/);
    // The last stage's output (logits) is not sent: only the input is checked.
    expect(checkHopReceipt(r, { ...expect0, output: undefined })).toBeNull();
  });

  it('parsing refuses inference receipts without a sketch and train receipts with one', async () => {
    const r = await hopReceipt(keys[0], ctx(0, 0), { unit: 1, audit: false, flops: 10, input, output });
    const { sketch: _s, ...bare } = r;
    expect(() => parseReceipt(bare)).toThrow(/needs a sketch of 8 finite numbers/);
    expect(() => parseReceipt({ ...r, sketch: [1, 2, NaN, 4, 5, 6, 7, 8] })).toThrow(/needs a sketch/);
    expect(() => parseReceipt({ ...r, sessionStep: -1 })).toThrow(/session's weights step, an integer ≥ 0/);
    const { sessionStep: _ss, ...noStep } = r;
    expect(() => parseReceipt(noStep)).toThrow(/session's weights step/);
    expect(() => parseReceipt({ ...r, kind: 'train', micro: 0, replica: 0 })).toThrow(/a train receipt has no sketch/);
  });

  it('the verdict credits served hops, and an audit replay with a different output catches the server', async () => {
    const honest = (i: number, replica: number, unit: number, audit: boolean, out: Float32Array) =>
      hopReceipt(keys[i], ctx(i, replica), { unit, audit, flops: 100, input, output: out });
    const noisy = output.map((v) => v * (1 + 1e-6 * rng.uniform()));
    const wrong = output.map((v, j) => (j % 7 === 0 ? v + 0.5 : v));
    const receipts = [
      await honest(0, 0, 1, false, output),
      await honest(1, 1, 1, true, noisy), // peer 0 served, peer 1 replayed: match
      await honest(2, 0, 2, false, wrong),
      await honest(1, 1, 2, true, output), // peer 2 served a wrong output: caught
      await honest(0, 0, 3, false, output), // not audited: credited on the requester's record
      { ...(await honest(1, 1, 4, true, output)) }, // a replay of a unit nobody served: checks nothing
    ];
    const j = judgeEpoch(receipts, 4);
    const v = Object.fromEntries(j.verdicts.map((x) => [x.peerId, x]));
    expect(v[ids[0]]).toMatchObject({ caught: false, inferFlops: 200, passed: 1, credited: 200 });
    expect(v[ids[2]]).toMatchObject({ caught: true, failed: 1, credited: 0 });
    expect(v[ids[1]]).toMatchObject({ caught: false, auditFlops: 200, credited: 200 });
    expect(j.audits.map((a) => a.result)).toEqual(['match', 'mismatch', 'unmatched']);
    // Replays on other weights than the served hop's (a training step between them, or within either session) are not
    // compared.
    const later = await hopReceipt(keys[1], ctx(1, 1, 6), { unit: 2, audit: true, flops: 100, input, output });
    const mixed = await hopReceipt(keys[1], ctx(1, 1, 5, 4), { unit: 2, audit: true, flops: 100, input, output });
    expect(judgeEpoch([receipts[2], later, mixed], 4).audits.map((a) => a.result)).toEqual(['stale', 'stale']);
    expect(judgeEpoch([receipts[2], later, mixed], 4).verdicts.find((x) => x.peerId === ids[2])!.caught).toBe(false);
    // A replay fed different input bytes says nothing about the server.
    const other = await hopReceipt(keys[1], ctx(1, 1), {
      unit: 1,
      audit: true,
      flops: 100,
      input: bytesOf(Float32Array.of(9)),
      output: wrong,
    });
    expect(judgeEpoch([receipts[0], other], 4).audits[0].result).toBe('input-mismatch');
  });
});
