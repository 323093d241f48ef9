import type { Gpu } from '../gpu/index.ts';
import { expectClose, shapeName, type CheckSize } from './check-kit.ts';
import type { Comparison, Tolerance } from './compare.ts';
import { crossEntropy } from './crossentropy.ts';
import { crossEntropyRef } from './crossentropy.ref.ts';
import { Rng } from './rng.ts';

/** Row losses sum V exponentials in float32: relative error ~1e-6; logits of ±1e4 add ~1 ulp of 1e4. */
export const CROSSENTROPY_LOSS_TOL: Tolerance = { atol: 1e-5, rtol: 1e-5 };

/** dlogits are probabilities scaled by 1/count: the absolute bound scales with it. */
export function crossEntropyGradTol(count: number): Tolerance {
  return { atol: 1e-6 / Math.max(count, 1), rtol: 1e-4 };
}

interface Case {
  n: number;
  v: number;
  /** Logits uniform in offset ± range. */
  range: number;
  offset?: number;
  /** Fraction of rows whose target is the ignore index. */
  ignored: number;
  ignoreIndex: number;
  withGrad: boolean;
}

export async function checkCrossEntropy(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(31);
  const cases: Case[] =
    size === 'small'
      ? [{ n: 6, v: 37, range: 4, ignored: 0.3, ignoreIndex: -1, withGrad: true }]
      : [
          { n: 1, v: 37, range: 4, ignored: 0, ignoreIndex: -1, withGrad: true },
          { n: 45, v: 37, range: 8, ignored: 0.25, ignoreIndex: -1, withGrad: true },
          { n: 67, v: 5003, range: 6, ignored: 0.2, ignoreIndex: -100, withGrad: true },
          { n: 5, v: 50257, range: 1e4, ignored: 0, ignoreIndex: -1, withGrad: true }, // large V, huge logits
          // exp(z) overflows float32 without the max subtraction, yet the softmax is far from one-hot
          { n: 7, v: 5003, range: 8, offset: 1e4, ignored: 0, ignoreIndex: -1, withGrad: true },
          { n: 3, v: 37, range: 8, offset: -1e4, ignored: 0, ignoreIndex: -1, withGrad: true },
          { n: 300, v: 65, range: 30, ignored: 0.1, ignoreIndex: -1, withGrad: false },
          { n: 70001, v: 3, range: 4, ignored: 0.1, ignoreIndex: -1, withGrad: true }, // rows > one grid dimension
          { n: 4, v: 37, range: 4, ignored: 1, ignoreIndex: -1, withGrad: true }, // every row ignored → 0, no NaN
        ];
  const out: Comparison[] = [];
  for (const c of cases) {
    const logits = rng.f32(c.n * c.v, (c.offset ?? 0) - c.range, (c.offset ?? 0) + c.range);
    const targets = new Int32Array(c.n);
    for (let r = 0; r < c.n; r++) targets[r] = rng.next() < c.ignored ? c.ignoreIndex : rng.int(c.v);
    if (c.ignored > 0 && c.ignored < 1) targets[c.n - 1] = c.ignoreIndex; // at least one ignored row
    const ref = crossEntropyRef(logits, targets, c.n, c.v, c.ignoreIndex);
    const lt = gpu.upload(logits, [c.n, c.v]);
    const tt = gpu.upload(targets, [c.n]);
    const res = crossEntropy(gpu, lt, tt, { ignoreIndex: c.ignoreIndex, withGrad: c.withGrad });
    const name =
      `${shapeName([c.n, c.v])} ${c.offset ?? ''}±${c.range} ${ref.count}/${c.n} ` +
      `rows${c.withGrad ? '' : ' no grad'}`;
    out.push(await expectClose(gpu, `crossentropy.losses ${name}`, res.losses, ref.losses, CROSSENTROPY_LOSS_TOL));
    out.push(await expectClose(gpu, `crossentropy.loss ${name}`, res.loss, [ref.loss], CROSSENTROPY_LOSS_TOL));
    if (res.dlogits)
      out.push(
        await expectClose(
          gpu,
          `crossentropy.dlogits ${name}`,
          res.dlogits,
          ref.dlogits,
          crossEntropyGradTol(ref.count),
        ),
      );
    gpu.release(lt, tt);
  }
  return out;
}
