import type { Gpu } from '../gpu/index.ts';
import { expectClose, shapeName, type CheckSize } from './check-kit.ts';
import type { Comparison, Tolerance } from './compare.ts';
import { layernorm, layernormBackward } from './layernorm.ts';
import { layernormBackwardRef, layernormRef } from './layernorm.ref.ts';
import { Rng } from './rng.ts';

/**
 * float32 row reductions over C columns: a few ulps of the row's values. dγ/dβ also sum over N rows (64-row
 * chunks, then the chunks in order), so their error grows with N; relative to |dγ| ~ √N it stays ≲ 1e-5
 * (measured 3e-4 absolute on |dγ| ~ 130 at N = 70001).
 */
export const LAYERNORM_TOL: Tolerance = { atol: 1e-5, rtol: 1e-5 };
export const LAYERNORM_GRAD_TOL: Tolerance = { atol: 5e-5, rtol: 1e-4 };

export async function checkLayernorm(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(23);
  // [N, C]: one row; odd sizes; C = 2; N spanning several 64-row chunks of the dγ/dβ reduction and not a
  // multiple of the workgroup; GPT-2's C = 768 (wider than one workgroup); more rows than one grid dimension.
  const shapes =
    size === 'small'
      ? [
          [5, 24],
          [1, 3],
        ]
      : [
          [1, 16],
          [45, 65],
          [130, 2],
          [257, 768],
          [70001, 3],
        ];
  const out: Comparison[] = [];
  for (const [n, c] of shapes) {
    // Rows with an offset and spread so mean ≠ 0 and var ≠ 1 matter. Very narrow rows are alternately
    // above/below the offset: two normal draws can nearly coincide, and then rstd → 1/√eps and dx is too
    // ill-conditioned for any float32 kernel to match float64 closely.
    const x = new Float32Array(n * c);
    for (let r = 0; r < n; r++) {
      const offset = rng.uniform(-4, 4);
      const scale = rng.uniform(0.2, 3);
      for (let i = 0; i < c; i++) {
        x[r * c + i] = offset + scale * (c < 8 ? (i % 2 ? 1 : -1) * rng.uniform(0.5, 1.5) : rng.normal());
      }
    }
    const gamma = rng.f32(c, 0.5, 1.5);
    const beta = rng.f32(c, -0.5, 0.5);
    const dy = rng.f32(n * c);
    const name = shapeName([n, c]);
    const xt = gpu.upload(x, [n, c]);
    const gt = gpu.upload(gamma, [c]);
    const bt = gpu.upload(beta, [c]);
    const dyt = gpu.upload(dy, [n, c]);
    const ref = layernormRef(x, gamma, beta, n, c);
    const refB = layernormBackwardRef(x, gamma, dy, n, c);
    const { y, mean, rstd } = layernorm(gpu, xt, gt, bt);
    const { dx, dgamma, dbeta } = layernormBackward(gpu, xt, gt, mean, rstd, dyt);
    out.push(await expectClose(gpu, `layernorm.forward y ${name}`, y, ref.y, LAYERNORM_TOL));
    out.push(await expectClose(gpu, `layernorm.forward mean ${name}`, mean, ref.mean, LAYERNORM_TOL));
    out.push(await expectClose(gpu, `layernorm.forward rstd ${name}`, rstd, ref.rstd, LAYERNORM_TOL));
    out.push(await expectClose(gpu, `layernorm.backward dx ${name}`, dx, refB.dx, LAYERNORM_GRAD_TOL));
    out.push(await expectClose(gpu, `layernorm.backward dgamma ${name}`, dgamma, refB.dgamma, LAYERNORM_GRAD_TOL));
    out.push(await expectClose(gpu, `layernorm.backward dbeta ${name}`, dbeta, refB.dbeta, LAYERNORM_GRAD_TOL));
    gpu.release(xt, gt, bt, dyt);
  }
  return out;
}
