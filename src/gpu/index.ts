export { Gpu, type Dispatch, type GpuOptions, type HostArray, type Timing } from './gpu.ts';
export * from './errors.ts';
export * from './tensor.ts';
export { adapterLabel, type AdapterSummary } from './adapter-info.ts';
export { ADVICE } from './acquire.ts';
export type { Param } from './params.ts';
