/** What a person (and the kernel selector) needs to know about the adapter. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** 'browser' (navigator.gpu) or 'dawn' (npm `webgpu` in Node). */
  runtime: 'browser' | 'dawn';
  /** A CPU implementation (SwiftShader, lavapipe/llvmpipe, WARP, fallback adapter). */
  isSoftware: boolean;
  features: string[];
  limits: Record<string, number>;
}

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|software|microsoft basic render|warp|\bcpu\b/i;

export function summarizeAdapter(adapter: GPUAdapter, runtime: 'browser' | 'dawn'): AdapterSummary {
  // GPUAdapterInfo exposes getters, not own properties: read each one explicitly.
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean; type?: string; backend?: string };
  const vendor = info.vendor ?? '';
  const architecture = info.architecture ?? '';
  const device = info.device ?? '';
  const description = info.description ?? '';
  const legacyFallback = (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const isSoftware =
    Boolean(info.isFallbackAdapter ?? legacyFallback) ||
    /cpu/i.test(info.type ?? '') ||
    SOFTWARE.test(`${vendor} ${architecture} ${device} ${description}`);
  const limits: Record<string, number> = {};
  for (const key of LIMIT_KEYS) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[key];
    if (typeof v === 'number') limits[key] = v;
  }
  return {
    vendor,
    architecture,
    device,
    description,
    runtime,
    isSoftware,
    features: [...adapter.features].sort(),
    limits,
  };
}

/** Limits the kernels read (and that the app shows). */
export const LIMIT_KEYS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
] as const;

export function adapterLabel(a: AdapterSummary): string {
  const name = a.description || a.device || a.architecture || 'unknown adapter';
  return `${a.vendor || 'unknown vendor'} · ${name}${a.isSoftware ? ' (software)' : ''} · ${a.runtime}`;
}
