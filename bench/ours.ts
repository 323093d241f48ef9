/**
 * Our WGSL matmul as benchmark implementations: each variant (the selector's choice is reported as 'ours').
 */
import type { Gpu, Tensor } from '../src/gpu/index.ts';
import { matmul, chooseMatmulVariant } from '../src/ops/matmul.ts';
import type { AdapterInfoLite, ImplId, MatmulCase } from './cases.ts';
import { operandShapes } from './onnx-matmul.ts';
import type { MatmulImpl } from './sweep.ts';
import { timed, timingSource } from './timing.ts';

export const VARIANTS = ['register', 'tiled', 'naive'] as const;
export type Variant = (typeof VARIANTS)[number];

export function oursMatmulImpls(gpu: Gpu): MatmulImpl[] {
  return VARIANTS.map((variant) => ({
    id: `ours:${variant}` as ImplId,
    backend: 'webgpu',
    source: timingSource(gpu),
    async create(c: MatmulCase, a: Float32Array, b: Float32Array) {
      const shapes = operandShapes(c);
      const A = gpu.upload(a, shapes.a, 'f32', 'bench.A');
      const B = gpu.upload(b, shapes.b, 'f32', 'bench.B');
      let Y: Tensor | undefined;
      return {
        run: () => {
          gpu.release(Y);
          return timed(gpu, () => {
            Y = matmul(gpu, A, B, { transA: c.transA, transB: c.transB, variant });
          });
        },
        output: async () => (Y ? ((await gpu.read(Y)) as Float32Array) : new Float32Array()),
        dispose: () => {
          gpu.release(A, B, Y);
          gpu.pool.trim();
        },
      };
    },
  }));
}

export function oursChosen(gpu: Gpu): (c: MatmulCase) => string {
  return (c) => chooseMatmulVariant(gpu, c.M, c.N, c.K, c.transA, c.transB);
}

export function adapterLite(gpu: Gpu): AdapterInfoLite {
  const a = gpu.adapter;
  return {
    vendor: a.vendor,
    architecture: a.architecture,
    device: a.device,
    description: a.description,
    isSoftware: a.isSoftware,
    runtime: a.runtime,
    timestampQuery: gpu.device.features.has('timestamp-query'),
  };
}
