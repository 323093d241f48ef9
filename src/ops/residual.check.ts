import type { Gpu } from '../gpu/index.ts';
import { ELEMENTWISE_TOL, expectClose, shapeName, type CheckSize } from './check-kit.ts';
import { compare, type Comparison } from './compare.ts';
import { addInPlace, residualAdd, residualBackward } from './residual.ts';
import { addInPlaceRef, residualAddRef, residualBackwardRef } from './residual.ref.ts';
import { Rng } from './rng.ts';

export async function checkResidual(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(23);
  const shapes = size === 'small' ? [[7, 13]] : [[1], [45, 65], [513, 1031]];
  const out: Comparison[] = [];
  for (const shape of shapes) {
    const n = shape[0] * (shape[1] ?? 1);
    const name = shapeName(shape);
    const a = rng.f32(n, -4, 4);
    const b = rng.f32(n, -4, 4);
    const dy = rng.f32(n);
    const at = gpu.upload(a, shape);
    const bt = gpu.upload(b, shape);
    out.push(
      await expectClose(gpu, `residual.add ${name}`, residualAdd(gpu, at, bt), residualAddRef(a, b), ELEMENTWISE_TOL),
    );

    // da and db are dy itself: read each but release dy only once.
    const dyt = gpu.upload(dy, shape);
    const { da, db } = residualBackward(gpu, dyt);
    const ref = residualBackwardRef(dy);
    out.push(compare(`residual.backward da ${name}`, await gpu.read(da), ref.da, ELEMENTWISE_TOL));
    out.push(compare(`residual.backward db ${name}`, await gpu.read(db), ref.db, ELEMENTWISE_TOL));

    // acc += s·x twice (accumulating two micro-batches, then averaging): acc = (a + s·b) + s·dy.
    const s = 0.37;
    addInPlace(gpu, at, bt, s);
    addInPlace(gpu, at, dyt, s);
    out.push(
      await expectClose(
        gpu,
        `residual.addInPlace ${name}`,
        at,
        addInPlaceRef(addInPlaceRef(a, b, s), dy, s),
        ELEMENTWISE_TOL,
      ),
    );

    // x aliasing acc takes the one-binding path.
    const ct = gpu.upload(a, shape);
    addInPlace(gpu, ct, ct, -0.5);
    out.push(
      await expectClose(gpu, `residual.addInPlace self ${name}`, ct, addInPlaceRef(a, a, -0.5), ELEMENTWISE_TOL),
    );
    gpu.release(bt, dyt);
  }
  return out;
}
