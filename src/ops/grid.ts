import type { Gpu } from '../gpu/index.ts';

/**
 * Workgroup grid for `n` independent items at `perGroup` items per workgroup. Splits into x·y when x would
 * exceed the device's per-dimension limit; kernels recover the flat index as wid.x + wid.y·num_workgroups.x.
 */
export function grid1d(gpu: Gpu, n: number, perGroup: number): [number, number] {
  const groups = Math.ceil(n / perGroup);
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

/** A workgroup size for 1-D elementwise kernels that the device allows. */
export function elementwiseWorkgroup(gpu: Gpu): number {
  return Math.min(256, gpu.limits.maxComputeInvocationsPerWorkgroup, gpu.limits.maxComputeWorkgroupSizeX);
}
