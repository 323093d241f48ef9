import { Gpu } from '../src/gpu/index.ts';
import { describe as describeComparison, type Comparison } from '../src/ops/compare.ts';
import { expect } from 'vitest';

let shared: Promise<Gpu> | undefined;

/** One Dawn device per test file (Node: lavapipe, or whatever VK_ICD_FILENAMES selects). */
export function testGpu(): Promise<Gpu> {
  return (shared ??= Gpu.create());
}

/** Asserts every comparison passed; on failure the message lists the first mismatches and the max error. */
export function expectAllPass(results: Comparison[]): void {
  expect(results.length).toBeGreaterThan(0);
  const failed = results.filter((r) => !r.pass);
  expect(failed.map(describeComparison).join('\n'), 'kernel/reference mismatches').toBe('');
}
