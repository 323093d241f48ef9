import type { Gpu } from '../gpu/index.ts';
import { ELEMENTWISE_TOL, expectClose, type CheckSize } from './check-kit.ts';
import type { Comparison, Tolerance } from './compare.ts';
import { embedding, embeddingBackward } from './embedding.ts';
import { embeddingBackwardRef, embeddingRef } from './embedding.ref.ts';
import { Rng } from './rng.ts';

/** Gradients sum up to B·T float32 values per element (a frequent token, or the batch). */
export const EMBEDDING_GRAD_TOL: Tolerance = { atol: 1e-5, rtol: 1e-5 };

interface Case {
  batch: number;
  seq: number;
  tmax: number;
  vocab: number;
  c: number;
  /** Fraction of positions holding token 0 (a very frequent token). */
  hot: number;
}

export async function checkEmbedding(gpu: Gpu, size: CheckSize): Promise<Comparison[]> {
  const rng = new Rng(47);
  const cases: Case[] =
    size === 'small'
      ? [{ batch: 2, seq: 5, tmax: 7, vocab: 11, c: 6, hot: 0.3 }]
      : [
          { batch: 1, seq: 1, tmax: 1, vocab: 37, c: 1, hot: 0 },
          { batch: 3, seq: 15, tmax: 16, vocab: 37, c: 65, hot: 0.2 }, // 45×65; 45 ids over 37 tokens repeat
          { batch: 4, seq: 129, tmax: 130, vocab: 5003, c: 67, hot: 0.5 },
          { batch: 2, seq: 9, tmax: 9, vocab: 50257, c: 16, hot: 0 }, // GPT-2 vocabulary, mostly unused tokens
        ];
  const out: Comparison[] = [];
  for (const k of cases) {
    const n = k.batch * k.seq;
    const ids = new Int32Array(n);
    for (let p = 0; p < n; p++) ids[p] = rng.next() < k.hot ? 0 : rng.int(k.vocab);
    const wte = rng.f32(k.vocab * k.c);
    const wpe = rng.f32(k.tmax * k.c);
    const dx = rng.f32(n * k.c);
    const name = `B${k.batch}×T${k.seq} V${k.vocab} C${k.c}`;
    const idsT = gpu.upload(ids, [n]);
    const wteT = gpu.upload(wte, [k.vocab, k.c]);
    const wpeT = gpu.upload(wpe, [k.tmax, k.c]);
    const dxT = gpu.upload(dx, [n, k.c]);
    const dims = { batch: k.batch, seq: k.seq };
    out.push(
      await expectClose(
        gpu,
        `embedding.forward ${name}`,
        embedding(gpu, idsT, wteT, wpeT, dims),
        embeddingRef(ids, wte, wpe, k.batch, k.seq, k.c),
        ELEMENTWISE_TOL,
      ),
    );
    const ref = embeddingBackwardRef(dx, ids, k.vocab, k.batch, k.seq, k.c);
    const { dwte, dwpe } = embeddingBackward(gpu, dxT, ids, k.vocab, dims);
    out.push(await expectClose(gpu, `embedding.backward dwte ${name}`, dwte, ref.dwte, EMBEDDING_GRAD_TOL));
    out.push(await expectClose(gpu, `embedding.backward dwpe ${name}`, dwpe, ref.dwpe, EMBEDDING_GRAD_TOL));
    gpu.release(idsT, wteT, wpeT, dxT);
  }
  return out;
}
