/**
 * Replays the pipeline schedule as if every stage ran on its own device: each operation takes a given
 * compute time, frames cross FIFO links with a bandwidth and a one-way latency, and a stage waits only for
 * its inputs. In one process all stages share one device, so the engine's own timings cannot show what N
 * peers would do; fed with the per-operation times the engine measured (OpSpan), this gives the tokens/s
 * and the bubble of N independent peers on that device. It executes the same op lists the engine executes
 * (asyncOneFOneB), so schedule and replay cannot drift apart.
 */
import type { LinkShape } from './memory-transport.ts';
import { asyncOneFOneB } from './schedule.ts';

export interface ReplayOptions {
  stages: number;
  microBatches: number;
  steps: number;
  /** 0: synchronous (each update also waits for every stage's gradient norm: one scalar round trip). */
  staleness: number;
  /** Compute milliseconds of one forward, one backward and one update, per stage. */
  costs: { F: number[]; B: number[]; U: number[] };
  /** Bytes of one frame crossing each boundary (activations forward, gradients backward). */
  frameBytes: number[];
  link?: LinkShape;
}

export interface ReplayResult {
  ms: number;
  /** Per stage: share of the wall time spent computing. */
  utilization: number[];
  /** 1 − mean utilization. */
  bubble: number;
}

/** Finish times of frames on one directed link, which carries one frame at a time in send order. */
class Link {
  private freeAt = 0;
  private readonly shape?: LinkShape;
  constructor(shape?: LinkShape) {
    this.shape = shape;
  }
  /** Arrival time of a frame of `bytes` handed to the link at `t`. */
  send(t: number, bytes: number): number {
    if (!this.shape) return t;
    const start = Math.max(t, this.freeAt);
    this.freeAt = start + (bytes * 8 * 1000) / this.shape.bitsPerSecond;
    return this.freeAt + this.shape.latencyMs;
  }
}

export function replaySchedule(o: ReplayOptions): ReplayResult {
  const N = o.stages;
  const micros = Array.from({ length: o.steps }, () => Array.from({ length: o.microBatches }, (_, m) => m));
  const ops = Array.from({ length: N }, (_, s) => asyncOneFOneB(s, N, micros, o.staleness));
  const next = new Array<number>(N).fill(0);
  const clock = new Array<number>(N).fill(0);
  const busy = new Array<number>(N).fill(0);
  const fwd = Array.from({ length: N - 1 }, () => new Link(o.link));
  const bwd = Array.from({ length: N - 1 }, () => new Link(o.link));
  const act = new Map<string, number>(); // `${stage}:${step}:${micro}` → arrival at that stage
  const grad = new Map<string, number>();
  const atUpdate = Array.from({ length: o.steps }, () => new Map<number, number>()); // step → stage → ready time
  const key = (s: number, k: number, m: number) => `${s}:${k}:${m}`;
  let progress = true;
  while (progress) {
    progress = false;
    for (let s = 0; s < N; s++) {
      while (next[s] < ops[s].length) {
        const op = ops[s][next[s]];
        let start = clock[s];
        if (op.op === 'F' && s > 0) {
          const t = act.get(key(s, op.step, op.micro));
          if (t === undefined) break;
          start = Math.max(start, t);
        } else if (op.op === 'B' && s < N - 1) {
          const t = grad.get(key(s, op.step, op.micro));
          if (t === undefined) break;
          start = Math.max(start, t);
        } else if (op.op === 'U' && o.staleness === 0 && N > 1) {
          atUpdate[op.step].set(s, start);
          if (atUpdate[op.step].size < N) break;
          // Every stage's norm must arrive: the last stage to get here plus one latency.
          start = Math.max(...atUpdate[op.step].values()) + (o.link?.latencyMs ?? 0);
        }
        const cost = o.costs[op.op][s];
        const end = start + cost;
        busy[s] += cost;
        clock[s] = end;
        if (op.op === 'F' && s < N - 1) act.set(key(s + 1, op.step, op.micro), fwd[s].send(end, o.frameBytes[s]));
        if (op.op === 'B' && s > 0) grad.set(key(s - 1, op.step, op.micro), bwd[s - 1].send(end, o.frameBytes[s - 1]));
        next[s]++;
        progress = true;
      }
    }
  }
  if (next.some((n, s) => n < ops[s].length)) throw new Error('replaySchedule: deadlock (bug)');
  const ms = Math.max(...clock);
  const utilization = busy.map((b) => b / ms);
  return { ms, utilization, bubble: 1 - utilization.reduce((a, b) => a + b, 0) / N };
}
