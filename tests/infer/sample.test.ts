import { describe, expect, it } from 'vitest';
import { ArgumentError } from '../../src/gpu/index.ts';
import { candidates, greedy, sample, Sampler } from '../../src/infer/sample.ts';
import { Rng } from '../../src/ops/rng.ts';

const logitsOf = (seed: number, n = 50, spread = 4) => Array.from(new Rng(seed).f32(n, -spread, spread));

function softmax(l: number[], T = 1): number[] {
  const m = Math.max(...l);
  const e = l.map((v) => Math.exp((v - m) / T));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Token ids by logit, best first (ties: lower id). */
const ranked = (l: number[]) =>
  l
    .map((v, i) => [v, i])
    .sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .map((p) => p[1]);

describe('sampling', () => {
  it('greedy is the argmax, the lowest id on ties', () => {
    expect(greedy([0.1, 3, -2, 3, 1])).toBe(1);
    expect(greedy([-Infinity, -5, -Infinity])).toBe(1);
    const l = logitsOf(1);
    expect(greedy(l)).toBe(ranked(l)[0]);
  });

  it('temperature 0, and temperature → 0, equal greedy for every seed', () => {
    for (let s = 0; s < 20; s++) {
      const l = logitsOf(s);
      const g = greedy(l);
      expect(new Sampler({ temperature: 0, seed: s }).next(l)).toBe(g);
      // Greedy once T is small against the gap between the best two logits: e^(−gap/T) < e^(−40).
      const [a, b] = ranked(l);
      const gap = l[a] - l[b];
      for (const T of [gap / 40, gap / 1000, 1e-12]) {
        const sampler = new Sampler({ temperature: T, seed: s });
        for (let k = 0; k < 20; k++) expect(sampler.next(l)).toBe(g);
      }
    }
    // The limit is taken without overflow even for logits far apart.
    expect(candidates([1e30, -1e30, 0], { temperature: 1e-300 }).probs[0]).toBe(1);
  });

  it('top-k never picks outside the k best', () => {
    for (let s = 0; s < 10; s++) {
      const l = logitsOf(100 + s, 40, 1); // a flat distribution: every token is likely without the filter
      for (const k of [1, 3, 10]) {
        const best = new Set(ranked(l).slice(0, k));
        const sampler = new Sampler({ topK: k, seed: s });
        const seen = new Set<number>();
        for (let d = 0; d < 400; d++) {
          const id = sampler.next(l);
          expect(best.has(id)).toBe(true);
          seen.add(id);
        }
        expect(seen.size).toBe(k); // and all of them get drawn
      }
      expect(new Sampler({ topK: 1, temperature: 5, seed: s }).next(l)).toBe(greedy(l));
    }
  });

  it('top-p keeps the smallest most-likely set whose mass reaches p', () => {
    for (let s = 0; s < 10; s++) {
      const l = logitsOf(200 + s);
      const p = softmax(l);
      const order = ranked(l);
      for (const topP of [0.1, 0.5, 0.9, 0.99]) {
        const c = candidates(l, { topP });
        expect(Array.from(c.ids)).toEqual(order.slice(0, c.ids.length));
        const mass = Array.from(c.ids).reduce((a, id) => a + p[id], 0);
        const withoutLast = mass - p[c.ids[c.ids.length - 1]];
        expect(mass).toBeGreaterThanOrEqual(topP - 1e-12);
        expect(withoutLast).toBeLessThan(topP);
        // Renormalised: the kept tokens keep their relative odds.
        expect(c.probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
        for (let r = 0; r < c.ids.length; r++) expect(c.probs[r]).toBeCloseTo(p[c.ids[r]] / mass, 12);
        const sampler = new Sampler({ topP, seed: s });
        const kept = new Set(c.ids);
        for (let d = 0; d < 200; d++) expect(kept.has(sampler.next(l))).toBe(true);
      }
    }
    // top-k first, then top-p within the k.
    const l = [5, 4, 3, 2, 1, 0];
    const c = candidates(l, { topK: 3, topP: 0.95 });
    expect(Array.from(c.ids)).toEqual([0, 1, 2].slice(0, c.ids.length));
    expect(c.ids.length).toBeLessThanOrEqual(3);
  });

  it('draws follow the filtered softmax', () => {
    const l = [2, 1, 0.5, 0, -1, -3];
    for (const opts of [{}, { temperature: 0.7 }, { temperature: 2, topK: 4 }, { topP: 0.8 }]) {
      const c = candidates(l, opts);
      const counts = new Map<number, number>();
      const sampler = new Sampler({ ...opts, seed: 7 });
      const N = 20000;
      for (let d = 0; d < N; d++) {
        const id = sampler.next(l);
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      for (let r = 0; r < c.ids.length; r++) {
        const f = (counts.get(c.ids[r]) ?? 0) / N;
        // 5 standard deviations of a binomial proportion.
        expect(Math.abs(f - c.probs[r])).toBeLessThan(5 * Math.sqrt((c.probs[r] * (1 - c.probs[r])) / N) + 1e-9);
      }
      expect([...counts.keys()].every((id) => c.ids.includes(id))).toBe(true);
    }
    expect(
      softmax(l)
        .map((v, i) => v - candidates(l).probs[candidates(l).ids.indexOf(i)])
        .every((d) => Math.abs(d) < 1e-12),
    ).toBe(true);
  });

  it('is deterministic given the seed', () => {
    const l = logitsOf(3, 100, 1);
    const run = (seed: number, opts = {}) => {
      const s = new Sampler({ ...opts, seed });
      return Array.from({ length: 50 }, () => s.next(l));
    };
    for (const opts of [{}, { temperature: 0.8, topK: 20 }, { topP: 0.9 }]) {
      expect(run(42, opts)).toEqual(run(42, opts));
      expect(run(42, opts)).not.toEqual(run(43, opts));
    }
    const unseeded = new Sampler();
    expect(Number.isInteger(unseeded.seed)).toBe(true);
    const replay = new Sampler({ seed: unseeded.seed });
    for (let d = 0; d < 20; d++) expect(replay.next(l)).toBe(unseeded.next(l));
    // u picks by the inverse CDF over the candidates, most likely first.
    expect(sample([0, 10, 0], {}, 0)).toBe(1);
    expect(sample([0, 10, 0], {}, 0.999999)).not.toBe(1);
  });

  it('skips −∞ logits and rejects bad options and logits', () => {
    const sampler = new Sampler({ seed: 1 });
    for (let d = 0; d < 100; d++) expect(sampler.next([-Infinity, 0, -Infinity, 0])).toBeOneOf([1, 3]);
    for (const bad of [
      { temperature: -1 },
      { temperature: NaN },
      { temperature: Infinity },
      { topK: -1 },
      { topK: 1.5 },
      { topP: 0 },
      { topP: 1.1 },
      { seed: -1 },
      { seed: 0.5 },
    ]) {
      expect(() => new Sampler(bad)).toThrow(ArgumentError);
    }
    expect(() => greedy([])).toThrow(ArgumentError);
    expect(() => greedy([0, NaN])).toThrow(ArgumentError);
    expect(() => candidates([-Infinity, -Infinity])).toThrow(/−∞/);
    expect(() => sample([0, 1], {}, 1)).toThrow(ArgumentError);
  });
});
