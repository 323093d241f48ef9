import type { Gpu } from '../gpu/index.ts';
import { ELEMENTWISE_TOL, expectClose, shapeName, type CheckSize } from './check-kit.ts';
import { compare, type Comparison } from './compare.ts';
import { clipGradNorm, gradNorm, scaleInPlace } from './gradclip.ts';
import { clipScaleRef, gradNormRef, scaleRef } from './gradclip.ref.ts';
import { Rng } from './rng.ts';

/**
 * Global norm over a set of tensors of mixed sizes (1 element, one partial chunk of 256·16 exactly, one more,
 * many chunks), the clipping factor when clipping bites and when it does not, and scaleInPlace.
 */
export async function checkGradClip(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(59);
  const shapes = size === 'small' ? [[1], [7, 13], [70, 70]] : [[1], [45, 65], [513, 1031], [4096], [4097], [3]];
  const host = shapes.map((s) => rng.f32(s[0] * (s[1] ?? 1), -2, 2));
  const grads = host.map((h, i) => gpu.upload(h, shapes[i]));
  const want = gradNormRef(host);
  const set = shapes.map(shapeName).join(' ');
  const out: Comparison[] = [];

  out.push(await expectClose(gpu, `gradNorm ${set}`, gradNorm(gpu, grads), [want], ELEMENTWISE_TOL));

  for (const maxNorm of [want / 3, want * 2]) {
    const { norm, scale } = clipGradNorm(gpu, grads, maxNorm);
    const label = `clipGradNorm maxNorm=${(maxNorm / want).toFixed(2)}·norm`;
    out.push(await expectClose(gpu, `${label} norm`, norm, [want], ELEMENTWISE_TOL));
    const s = (await gpu.read(scale))[0];
    out.push(compare(`${label} scale`, [s], [clipScaleRef(want, Math.fround(maxNorm))], ELEMENTWISE_TOL));
    // Materialise the clipped gradient of one tensor with the GPU's own scale.
    const k = 1 % grads.length;
    scaleInPlace(gpu, grads[k], scale);
    out.push(
      await expectClose(
        gpu,
        `scaleInPlace ${shapeName(shapes[k])} by ${label} scale`,
        grads[k],
        scaleRef(host[k], s),
        ELEMENTWISE_TOL,
      ),
    );
    grads[k] = gpu.upload(host[k], shapes[k]);
    gpu.release(scale);
  }
  gpu.release(...grads);
  return out;
}
