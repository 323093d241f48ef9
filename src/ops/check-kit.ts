import type { Gpu, Tensor } from '../gpu/index.ts';
import { compare, type Comparison, type Tolerance } from './compare.ts';

/**
 * Shared pieces of the kernel checks (`src/ops/<op>.check.ts`): each check runs its op's WGSL kernels on
 * seeded random inputs and compares every output with the float64 reference. 'small' shapes run in the
 * browser self-test (SwiftShader is slow); 'full' shapes, with odd sizes at tile edges, run in Node tests.
 */
export type CheckSize = 'small' | 'full';

export type OpCheck = (gpu: Gpu, size: CheckSize) => Promise<Comparison[]>;

/** float32 kernels against float64 references: elementwise ops are accurate to a few ulps. */
export const ELEMENTWISE_TOL: Tolerance = { atol: 1e-6, rtol: 1e-5 };

/** Reads `t` back, compares it with `want`, and releases it. */
export async function expectClose(
  gpu: Gpu,
  name: string,
  t: Tensor,
  want: ArrayLike<number>,
  tol: Tolerance,
): Promise<Comparison> {
  const got = await gpu.read(t);
  gpu.release(t);
  return compare(name, got, want, tol);
}

export function shapeName(shape: readonly number[]): string {
  return `[${shape.join('×')}]`;
}
