import type { Gpu, Tensor } from '../gpu/index.ts';
import { expectClose, type CheckSize } from './check-kit.ts';
import type { Comparison, Tolerance } from './compare.ts';
import { biasGrad, linearBackward, linearForward, matmul, MATMUL_VARIANTS, type MatmulVariant } from './matmul.ts';
import { biasGradRef, linearBackwardRef, linearForwardRef, matmulRef } from './matmul.ref.ts';
import { Rng } from './rng.ts';

/**
 * Tolerance for a float32 sum of K products of O(1) values (inputs uniform in [-1, 1]), summed in k order.
 * Each step rounds a partial sum of size ~σ√k (σ = 1/3), so the rounding errors random-walk to a standard
 * deviation of about u·σ·K/√24 ≈ 4e-9·K (u = 2⁻²⁴): 4e-6 at K = 1024, ~2e-5 at 5σ over 10⁵ outputs.
 * atol = 4e-6·√K (1.3e-4 at K = 1024, 2.6e-4 at K = 4096) keeps a ≥ 5× margin for K ≤ 4096, and rtol 1e-4
 * covers bias/accumulate terms and large results. A real bug (a missing or doubled k term, a wrong row or
 * column) is off by ~|a·b| ≈ 0.1–1, three orders above it. Measured max errors are 1e-6–1e-5.
 */
export function matmulTolerance(K: number): Tolerance {
  return { atol: 4e-6 * Math.sqrt(K), rtol: 1e-4 };
}

const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

function opName(transA: boolean, transB: boolean): string {
  return `${transA ? 'Aᵀ' : 'A'}·${transB ? 'Bᵀ' : 'B'}`;
}

export async function checkMatmul(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(29);
  // [M, N, K]. small (SwiftShader self-test, ~0.3 MFLOP): odd sizes, M = 1, and one tile multiple (the
  // tiled kernel's fast path). full: odd sizes below and above one tile, M = 1, N = 1, K = 1, N not a
  // multiple of 4 (the register kernel's scalar path), tile multiples (fast path), a K that is not a
  // multiple of the tiled kernel's 16-deep slab, and a larger case spanning many workgroups.
  const shapes: Array<[number, number, number]> =
    size === 'small'
      ? [
          [5, 7, 9],
          [1, 6, 4],
          [64, 64, 16],
        ]
      : [
          [45, 65, 37],
          [1, 70, 33],
          [17, 19, 1],
          [33, 1, 40],
          [66, 7, 129],
          [64, 128, 64],
          [128, 64, 48],
          [256, 384, 320],
        ];
  // The self-test ('small') checks what can run on this adapter: on CPU drivers the selector never picks
  // 'tiled', and its two pipelines take ~2 s each to compile on SwiftShader (10× the others); Node's 'full'
  // check covers it on lavapipe.
  const variants =
    size === 'small' && gpu.adapter.isSoftware ? MATMUL_VARIANTS.filter((v) => v !== 'tiled') : MATMUL_VARIANTS;
  const out: Comparison[] = [];
  for (const [M, N, K] of shapes) {
    const big = M * N * K > 4e6;
    const tol = matmulTolerance(K);
    const a = rng.f32(M * K);
    const b = rng.f32(K * N);
    const bias = rng.f32(N);
    const c0 = rng.f32(M * N);
    const biasT = gpu.upload(bias, [N]);
    for (const [transA, transB] of TRANSPOSES) {
      // The same values serve as A [M,K] or, with transA, as A stored [K,M] (likewise B): the reference
      // reads them through the same transposes.
      const At = gpu.upload(a, transA ? [K, M] : [M, K]);
      const Bt = gpu.upload(b, transB ? [N, K] : [K, N]);
      const plain = matmulRef(a, b, M, N, K, { transA, transB });
      const both = big ? undefined : matmulRef(a, b, M, N, K, { transA, transB, bias, accumulate: c0 });
      for (const variant of variants) {
        const name = `matmul.${variant} ${opName(transA, transB)} [M=${M} N=${N} K=${K}]`;
        out.push(await expectClose(gpu, name, matmul(gpu, At, Bt, { transA, transB, variant }), plain, tol));
        if (both) {
          const acc = gpu.upload(c0, [M, N]);
          out.push(
            await expectClose(
              gpu,
              `${name} +bias +=C`,
              matmul(gpu, At, Bt, { transA, transB, bias: biasT, accumulate: acc, variant }),
              both,
              tol,
            ),
          );
        }
      }
      gpu.release(At, Bt);
    }
    gpu.release(biasT);
  }
  out.push(...(await checkEpilogues(gpu, rng, variants)));
  out.push(...(await checkBiasGrad(gpu, rng, size)));
  out.push(...(await checkLinear(gpu, rng, size)));
  return out;
}

/** Bias alone and accumulate alone (the shape loop above runs them together). */
async function checkEpilogues(gpu: Gpu, rng: Rng, variants: readonly MatmulVariant[]): Promise<Comparison[]> {
  const [M, N, K] = [9, 13, 11];
  const a = rng.f32(M * K);
  const b = rng.f32(K * N);
  const bias = rng.f32(N);
  const c0 = rng.f32(M * N);
  const At = gpu.upload(a, [M, K]);
  const Bt = gpu.upload(b, [K, N]);
  const biasT = gpu.upload(bias, [N]);
  const tol = matmulTolerance(K);
  const out: Comparison[] = [];
  for (const variant of variants) {
    out.push(
      await expectClose(
        gpu,
        `matmul.${variant} +bias [M=${M} N=${N} K=${K}]`,
        matmul(gpu, At, Bt, { bias: biasT, variant }),
        matmulRef(a, b, M, N, K, { bias }),
        tol,
      ),
    );
    const acc = gpu.upload(c0, [M, N]);
    const got = matmul(gpu, At, Bt, { accumulate: acc, variant });
    out.push(
      await expectClose(
        gpu,
        `matmul.${variant} +=C [M=${M} N=${N} K=${K}]`,
        got,
        matmulRef(a, b, M, N, K, { accumulate: c0 }),
        tol,
      ),
    );
  }
  gpu.release(At, Bt, biasT);
  return out;
}

async function checkBiasGrad(gpu: Gpu, rng: Rng, size: CheckSize): Promise<Comparison[]> {
  const shapes =
    size === 'small'
      ? [[6, 5]]
      : [
          [45, 65],
          [1, 7],
          [300, 3],
          [512, 256],
        ];
  const out: Comparison[] = [];
  for (const [M, N] of shapes) {
    const dy = rng.f32(M * N);
    const prev = rng.f32(N);
    const tol = matmulTolerance(M);
    const dyT = gpu.upload(dy, [M, N]);
    const want = biasGradRef(dy, M, N);
    out.push(await expectClose(gpu, `matmul.biasGrad [${M}×${N}]`, biasGrad(gpu, dyT), want, tol));
    const acc = gpu.upload(prev, [N]);
    out.push(
      await expectClose(
        gpu,
        `matmul.biasGrad +=db [${M}×${N}]`,
        biasGrad(gpu, dyT, { accumulate: acc }),
        want.map((v, i) => v + prev[i]),
        tol,
      ),
    );
    gpu.release(dyT);
  }
  return out;
}

/** linearForward / linearBackward (with the selector's variant), fresh and accumulating gradients. */
async function checkLinear(gpu: Gpu, rng: Rng, size: CheckSize): Promise<Comparison[]> {
  const [M, K, N] = size === 'small' ? [3, 5, 6] : [37, 45, 65];
  const x = rng.f32(M * K);
  const w = rng.f32(K * N);
  const bias = rng.f32(N);
  const dy = rng.f32(M * N);
  const dw0 = rng.f32(K * N);
  const db0 = rng.f32(N);
  const [xt, wt, bt, dyt] = [
    gpu.upload(x, [M, K]),
    gpu.upload(w, [K, N]),
    gpu.upload(bias, [N]),
    gpu.upload(dy, [M, N]),
  ];
  const name = `[M=${M} K=${K} N=${N}]`;
  const out: Comparison[] = [];
  out.push(
    await expectClose(
      gpu,
      `linearForward ${name}`,
      linearForward(gpu, xt, wt, bt),
      linearForwardRef(x, w, bias, M, K, N),
      matmulTolerance(K),
    ),
  );
  const ref = linearBackwardRef(x, w, dy, M, K, N);
  const g = linearBackward(gpu, xt, wt, dyt);
  out.push(await expectClose(gpu, `linearBackward dx ${name}`, g.dx, ref.dx, matmulTolerance(N)));
  out.push(await expectClose(gpu, `linearBackward dw ${name}`, g.dw, ref.dw, matmulTolerance(M)));
  out.push(await expectClose(gpu, `linearBackward db ${name}`, g.db, ref.db, matmulTolerance(M)));
  const acc: { dw: Tensor; db: Tensor } = { dw: gpu.upload(dw0, [K, N]), db: gpu.upload(db0, [N]) };
  const ga = linearBackward(gpu, xt, wt, dyt, { accumulate: acc });
  gpu.release(ga.dx);
  out.push(
    await expectClose(
      gpu,
      `linearBackward dw += ${name}`,
      ga.dw,
      ref.dw.map((v, i) => v + dw0[i]),
      matmulTolerance(M),
    ),
  );
  out.push(
    await expectClose(
      gpu,
      `linearBackward db += ${name}`,
      ga.db,
      ref.db.map((v, i) => v + db0[i]),
      matmulTolerance(M),
    ),
  );
  gpu.release(xt, wt, bt, dyt);
  return out;
}
