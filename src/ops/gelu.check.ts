import type { Gpu } from '../gpu/index.ts';
import { ELEMENTWISE_TOL, expectClose, shapeName, type CheckSize } from './check-kit.ts';
import type { Comparison } from './compare.ts';
import { gelu, geluBackward } from './gelu.ts';
import { geluBackwardRef, geluRef } from './gelu.ref.ts';
import { Rng } from './rng.ts';

export async function checkGelu(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(11);
  const shapes = size === 'small' ? [[7, 13]] : [[1], [45, 65], [513, 1031]];
  const out: Comparison[] = [];
  for (const shape of shapes) {
    const n = shape[0] * (shape[1] ?? 1);
    const x = rng.f32(n, -6, 6);
    const dy = rng.f32(n);
    const xt = gpu.upload(x, shape);
    const dyt = gpu.upload(dy, shape);
    out.push(await expectClose(gpu, `gelu.forward ${shapeName(shape)}`, gelu(gpu, xt), geluRef(x), ELEMENTWISE_TOL));
    out.push(
      await expectClose(
        gpu,
        `gelu.backward ${shapeName(shape)}`,
        geluBackward(gpu, xt, dyt),
        geluBackwardRef(x, dy),
        ELEMENTWISE_TOL,
      ),
    );
    gpu.release(xt, dyt);
  }
  return out;
}
