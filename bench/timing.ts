/**
 * How our kernels are timed: gpu.time() (GPU timestamp queries around every compute pass when the adapter
 * has them, else labelled wall-clock), plus the wall clock around it for like-for-like peer comparisons.
 */
import type { Gpu } from '../src/gpu/index.ts';
import type { RunTiming } from './sweep.ts';

export function timingSource(gpu: Gpu): string {
  return gpu.timer.source === 'gpu-timestamps'
    ? 'GPU timestamps (gpu.time)'
    : 'wall-clock to onSubmittedWorkDone (no timestamp-query)';
}

/** Runs `fn` under gpu.time() and also measures the wall clock around it (sync included). */
export async function timed(gpu: Gpu, fn: () => void): Promise<RunTiming> {
  await gpu.sync();
  const t0 = performance.now();
  const t = await gpu.time(fn);
  return { ms: t.ms, wallMs: performance.now() - t0 };
}
