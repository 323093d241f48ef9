import { describe, expect, it } from 'vitest';
import { idealBubble } from '../../src/train/schedule.ts';
import { replaySchedule } from '../../src/train/simulate.ts';

const even = (N: number, f: number, b: number, u = 0) => ({
  F: Array(N).fill(f),
  B: Array(N).fill(b),
  U: Array(N).fill(u),
});

describe('schedule replay (independent devices)', () => {
  it('synchronous 1F1B with even stages and free links has exactly the ideal bubble (N−1)/(M+N−1)', () => {
    for (const [N, M] of [
      [4, 4],
      [4, 8],
      [3, 1],
      [2, 5],
    ]) {
      for (const [f, b] of [
        [1, 1],
        [1, 2],
      ]) {
        const r = replaySchedule({
          stages: N,
          microBatches: M,
          steps: 3,
          staleness: 0,
          costs: even(N, f, b),
          frameBytes: Array(N - 1).fill(0),
        });
        expect(r.ms).toBeCloseTo(3 * (M + N - 1) * (f + b), 9);
        expect(r.bubble, `N=${N} M=${M}`).toBeCloseTo(idealBubble(N, M), 9);
      }
    }
  });

  it('asynchronous 1F1B fills the drain: the bubble shrinks to the one warm-up of the whole run', () => {
    const N = 4;
    const M = 4;
    const S = 20;
    const r = replaySchedule({
      stages: N,
      microBatches: M,
      steps: S,
      staleness: 1,
      costs: even(N, 1, 2),
      frameBytes: Array(N - 1).fill(0),
    });
    expect(r.ms).toBeCloseTo((S * M + N - 1) * 3, 9);
    expect(r.bubble).toBeCloseTo(idealBubble(N, S * M), 9);
  });

  it('links add latency and serialisation; a slow stage sets the pace', () => {
    const N = 2;
    const link = { bitsPerSecond: 8e6, latencyMs: 50 }; // 1 byte per µs
    const free = replaySchedule({
      stages: N,
      microBatches: 1,
      steps: 1,
      staleness: 0,
      costs: even(N, 10, 10),
      frameBytes: [0],
    });
    const shaped = replaySchedule({
      stages: N,
      microBatches: 1,
      steps: 1,
      staleness: 0,
      costs: even(N, 10, 10),
      frameBytes: [10_000],
      link,
    });
    // One act frame and one grad frame (10 ms on the wire + 50 ms each), plus the norm exchange's latency.
    expect(shaped.ms - free.ms).toBeCloseTo(2 * (10 + 50) + 50, 9);
    const slow = replaySchedule({
      stages: 3,
      microBatches: 8,
      steps: 4,
      staleness: 1,
      costs: { F: [1, 5, 1], B: [1, 5, 1], U: [0, 0, 0] },
      frameBytes: [0, 0],
    });
    expect(slow.utilization[1]).toBeGreaterThan(0.95);
    expect(slow.utilization[0]).toBeLessThan(0.3);
  });
});
