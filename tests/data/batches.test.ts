import { describe, expect, it } from 'vitest';
import { BatchSampler, getBatch, validationBatches, type Batch } from '../../src/data/batches.ts';
import { encodeCorpus, loadTokenizer } from '../../src/data/brown-node.ts';
import { BatchError, DataError } from '../../src/data/errors.ts';

const arange = (n: number): Int32Array => Int32Array.from({ length: n }, (_, i) => i);

/** The algorithm exactly as the comment in batches.ts states it, written independently (as another peer would). */
function referenceStarts(n: number, seed: number, pass: number, index: number, B: number, T: number): number[] {
  const W = Math.floor(n / T) - 1;
  const fmix = (h: number): number => {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  };
  let s = fmix((seed ^ Math.imul(pass + 1, 0x9e3779b9)) >>> 0);
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (m: number): number => Math.floor(next() * m);
  const shift = int(T);
  const perm = Array.from({ length: W }, (_, i) => i);
  for (let i = W - 1; i >= 1; i--) {
    const j = int(i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return Array.from({ length: B }, (_, b) => shift + perm[index * B + b] * T);
}

const rows = (b: Batch): number[] => Array.from({ length: b.batchSize }, (_, r) => b.ids[r * b.seq]);

describe('deterministic batches', () => {
  it('follow the documented algorithm exactly', () => {
    const n = 10_007;
    for (const [seed, pass, index, B, T] of [
      [1234, 0, 0, 4, 16],
      [1234, 3, 7, 4, 16],
      [0xffffffff, 1, 2, 3, 64],
      [5, 0, 19, 8, 9],
    ]) {
      const b = getBatch(arange(n), { seed, pass, index, batchSize: B, seq: T });
      expect(rows(b)).toEqual(referenceStarts(n, seed, pass, index, B, T));
    }
    // Pinned values: a change of the algorithm shows up here, not in a peer's diverging run.
    expect(rows(getBatch(arange(1000), { seed: 42, pass: 0, index: 0, batchSize: 4, seq: 8 }))).toEqual(
      referenceStarts(1000, 42, 0, 0, 4, 8),
    );
    expect(referenceStarts(1000, 42, 0, 0, 4, 8)).toEqual([809, 65, 633, 465]);
  });

  it('are reproducible, and differ across passes and seeds', async () => {
    const stream = await encodeCorpus(loadTokenizer(1024), 'val');
    const spec = { seed: 99, batchSize: 8, seq: 64 };
    const a = new BatchSampler(stream, spec);
    const b = new BatchSampler(stream, spec);
    for (const [e, k] of [
      [0, 0],
      [0, 5],
      [2, 3],
      [0, 0],
    ]) {
      expect(a.batch(e, k)).toEqual(b.batch(e, k));
      expect(a.batch(e, k)).toEqual(getBatch(stream, { ...spec, pass: e, index: k }));
    }
    expect(a.batch(0, 0).ids).not.toEqual(a.batch(1, 0).ids);
    expect(a.batch(0, 0).ids).not.toEqual(new BatchSampler(stream, { ...spec, seed: 100 }).batch(0, 0).ids);
    expect(a.batch(0, 0).ids).not.toEqual(a.batch(0, 1).ids);
    const s = a.step(a.batchesPerPass + 2);
    expect([s.pass, s.index]).toEqual([1, 2]);
    expect(s.ids).toEqual(a.batch(1, 2).ids);
  });

  it('have targets = ids shifted by one token', async () => {
    const stream = await encodeCorpus(loadTokenizer(1024), 'val');
    const sampler = new BatchSampler(stream, { seed: 3, batchSize: 4, seq: 32 });
    const starts = sampler.starts(1, 2);
    const batch = sampler.batch(1, 2);
    expect(batch.ids.length).toBe(4 * 32);
    for (let r = 0; r < 4; r++) {
      for (let t = 0; t < 32; t++) {
        expect(batch.ids[r * 32 + t]).toBe(stream[starts[r] + t]);
        expect(batch.targets[r * 32 + t]).toBe(stream[starts[r] + t + 1]);
      }
    }
    const synthetic = getBatch(arange(500), { seed: 1, pass: 0, index: 0, batchSize: 3, seq: 10 });
    expect(Array.from(synthetic.targets)).toEqual(Array.from(synthetic.ids, (x) => x + 1));
  });

  it('use each window at most once per pass, all with the pass phase', () => {
    const n = 5000;
    const T = 16;
    const sampler = new BatchSampler(arange(n), { seed: 8, batchSize: 5, seq: T });
    expect(sampler.windows).toBe(Math.floor(n / T) - 1);
    const { shift } = sampler.passOrder(4);
    const seen = new Set<number>();
    for (let k = 0; k < sampler.batchesPerPass; k++) {
      for (const s of sampler.starts(4, k)) {
        expect((s - shift) % T).toBe(0);
        expect(s + T).toBeLessThan(n);
        seen.add(s);
      }
    }
    expect(seen.size).toBe(sampler.batchesPerPass * 5);
  });

  it('give a fixed validation set of evenly spaced windows', async () => {
    const stream = await encodeCorpus(loadTokenizer(1024), 'val');
    const all = validationBatches(stream, { batchSize: 16, seq: 64 });
    const wv = Math.floor((stream.length - 1) / 64);
    expect(all.length).toBe(Math.floor(wv / 16));
    expect(rows(all[0])).toEqual(Array.from(stream.subarray(0, 16 * 64)).filter((_, i) => i % 64 === 0));
    const few = validationBatches(stream, { batchSize: 16, seq: 64, maxBatches: 3 });
    expect(few.length).toBe(3);
    expect(validationBatches(stream, { batchSize: 16, seq: 64, maxBatches: 3 })).toEqual(few);
    const last = few[2];
    expect(last.targets[last.targets.length - 1]).toBe(stream[Math.floor((47 * wv) / 48) * 64 + 64]);
  });

  it('reject bad requests with BatchError', () => {
    const s = arange(100);
    const cases: Array<[string, () => unknown, RegExp]> = [
      ['seq longer than the stream', () => new BatchSampler(s, { seed: 1, batchSize: 1, seq: 60 }), /too long/],
      ['seq 0', () => new BatchSampler(s, { seed: 1, batchSize: 1, seq: 0 }), /seq/],
      ['batch size 0', () => new BatchSampler(s, { seed: 1, batchSize: 0, seq: 4 }), /batchSize/],
      ['too few windows', () => new BatchSampler(s, { seed: 1, batchSize: 30, seq: 4 }), /needs 30 windows/],
      ['negative seed', () => new BatchSampler(s, { seed: -1, batchSize: 1, seq: 4 }), /seed/],
      ['negative batch index', () => getBatch(s, { seed: 1, pass: 0, index: -1, batchSize: 2, seq: 4 }), /batch index/],
      ['batch index past the pass', () => getBatch(s, { seed: 1, pass: 0, index: 12, batchSize: 2, seq: 4 }), /0…11/],
      ['fractional index', () => getBatch(s, { seed: 1, pass: 0, index: 0.5, batchSize: 2, seq: 4 }), /batch index/],
      ['negative pass', () => getBatch(s, { seed: 1, pass: -1, index: 0, batchSize: 2, seq: 4 }), /pass/],
      ['negative step', () => new BatchSampler(s, { seed: 1, batchSize: 2, seq: 4 }).step(-3), /step/],
      ['validation seq too long', () => validationBatches(s, { batchSize: 1, seq: 100 }), /too long/],
    ];
    for (const [what, f, message] of cases) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(BatchError);
      expect(err, what).toBeInstanceOf(DataError);
      expect((err as BatchError).code, what).toBe('batch');
      expect((err as Error).message, what).toMatch(message);
    }
  });
});
