import { describe, expect, it } from 'vitest';
import { makeBasis } from '../../src/compress/basis.ts';
import type { CodecContext } from '../../src/compress/codec.ts';
import { makeCodec, type SubspaceCodec } from '../../src/compress/codecs.ts';
import {
  boundaryCodecs,
  codecForBoundary,
  projectedParams,
  stageNeedsSubspace,
  subspaceDrift,
  subspaceInit,
  subspaceProject,
} from '../../src/compress/subspace-model.ts';
import { ArgumentError, type Gpu } from '../../src/gpu/index.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages } from '../../src/model/stages.ts';
import { GOLDEN_ADAMW } from '../../src/ops/adamw.ts';
import { Rng } from '../../src/ops/rng.ts';
import { testGpu } from '../gpu-fixture.ts';

const cfg: ModelConfig = { vocab: 37, dModel: 32, heads: 2, layers: 2, context: 8, seed: 1 };
const B = 2;
const T = 8;
const K = 8;
const rows = B * T;
const C = cfg.dModel;

function batch(seed: number): { ids: Int32Array; targets: Int32Array } {
  const rng = new Rng(seed);
  return { ids: rng.ints(rows, cfg.vocab), targets: rng.ints(rows, cfg.vocab) };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** max|a − b| / max|b| */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / maxAbs(b);
}

/** Stage 0's output h for `ids` and its round trip through the codec: the relative reconstruction error. */
async function roundTrip(gpu: Gpu, s0: Stage, codec: SubspaceCodec, id: number, ids: Int32Array) {
  const out = s0.forward({ id, batch: B, seq: T, ids }).output!;
  const h = (await gpu.read(out)) as Float32Array;
  s0.discard(id);
  gpu.release(out);
  const ctx: CodecContext = { ids, kind: 'act' };
  const y = codec.decode(codec.encode(h, [rows, C], ctx), [rows, C], ctx);
  const hMinusE = h.map((v, i) => v - codec.basis.E[ids[Math.floor(i / C)] * C + (i % C)]);
  const yMinusE = y.map((v, i) => v - codec.basis.E[ids[Math.floor(i / C)] * C + (i % C)]);
  return { rel: relErr(y, h), relDelta: relErr(yMinusE, hMinusE), off: codec.offSubspace(h, [rows, C], ctx) };
}

/**
 * One training step through both stages with the subspace codec on the boundary (activations forward,
 * gradients backward), as the pipeline engine runs it. Returns the loss.
 */
async function trainStep(
  gpu: Gpu,
  s0: Stage,
  s1: Stage,
  codec: SubspaceCodec,
  id: number,
  project: boolean,
): Promise<number> {
  const { ids, targets } = batch(100); // one fixed batch: the loss must fall
  const out = s0.forward({ id, batch: B, seq: T, ids }).output!;
  const h = (await gpu.read(out)) as Float32Array;
  gpu.release(out);
  const act: CodecContext = { ids, kind: 'act' };
  const input = gpu.upload(codec.decode(codec.encode(h, [rows, C], act), [rows, C], act), [rows, C]);
  const r = s1.forward({ id, batch: B, seq: T, ids, targets, input });
  const loss = (await gpu.read(r.loss!))[0];
  gpu.release(r.loss, r.logits);
  const dx = s1.backward(id)!;
  const g = (await gpu.read(dx)) as Float32Array;
  gpu.release(dx);
  const gctx: CodecContext = { ids, kind: 'grad' };
  s0.backward(id, gpu.upload(codec.decode(codec.encode(g, [rows, C], gctx), [rows, C], gctx), [rows, C]));
  await s0.applyStep(GOLDEN_ADAMW);
  await s1.applyStep(GOLDEN_ADAMW);
  if (project) subspaceProject(gpu, s0, codec.basis);
  return loss;
}

describe('subspace-constrained model', () => {
  it(
    'stage 0 output crosses the subspace boundary exactly, before and after AdamW steps; not without ' + 'projection',
    async () => {
      const gpu = await testGpu();
      const [spec0, spec1] = splitStages(cfg, 2);
      const s0 = Stage.create(gpu, cfg, spec0);
      const s1 = Stage.create(gpu, cfg, spec1);
      const basis = makeBasis({ seed: 42, k: K, vocab: cfg.vocab, width: C });
      const codec = makeCodec('subspace', { seed: 42, k: K, vocab: cfg.vocab, width: C }) as SubspaceCodec;
      expect(codec.basis).toBe(basis);
      const { ids } = batch(7);

      const before = await roundTrip(gpu, s0, codec, 1000, ids);
      expect(before.rel, 'an unconstrained model is not in the subspace').toBeGreaterThan(0.1);

      subspaceInit(gpu, s0, basis);
      expect((await subspaceDrift(gpu, s0, basis)).max).toBeLessThan(1e-5);
      const init = await roundTrip(gpu, s0, codec, 1001, ids);
      expect(init.rel).toBeLessThan(1e-5);
      expect(init.relDelta).toBeLessThan(1e-5);

      const losses: number[] = [];
      for (let step = 0; step < 3; step++) {
        losses.push(await trainStep(gpu, s0, s1, codec, step, true));
        const r = await roundTrip(gpu, s0, codec, 2000 + step, ids);
        expect(r.rel, `after step ${step + 1}`).toBeLessThan(1e-5);
        expect(r.relDelta, `after step ${step + 1}`).toBeLessThan(1e-5);
      }
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[2]).toBeLessThan(losses[0]); // it trains through the codec

      // The same step without re-projection leaves the residual stream off the subspace: large error.
      await trainStep(gpu, s0, s1, codec, 3, false);
      const drift = await subspaceDrift(gpu, s0, basis);
      expect(drift.max).toBeGreaterThan(0.1);
      const unprojected = await roundTrip(gpu, s0, codec, 3000, ids);
      expect(unprojected.rel).toBeGreaterThan(1e-2);
      subspaceProject(gpu, s0, basis);
      const again = await roundTrip(gpu, s0, codec, 3001, ids);
      expect(again.rel).toBeLessThan(1e-5);

      console.log(
        `[compress] model k=${K} C=${C}: reconstruction max|Δh|/max|h| unconstrained ${before.rel.toExponential(2)}, ` +
          `after subspaceInit ${init.rel.toExponential(2)}, after 3 projected AdamW steps ` +
          `${again.rel.toExponential(2)}; ` +
          `one step without projection ${unprojected.rel.toExponential(2)} (param drift ` +
          `${drift.max.toExponential(2)}); losses ${losses.map((l) => l.toFixed(4)).join(', ')}`,
      );
      s0.destroy();
      s1.destroy();
    },
  );

  it('a middle stage that is also projected keeps its output exact (stacked codec on both boundaries)', async () => {
    const gpu = await testGpu();
    const cfg3: ModelConfig = { ...cfg, layers: 3 };
    const specs = splitStages(cfg3, 3);
    const [s0, s1] = specs.slice(0, 2).map((sp) => Stage.create(gpu, cfg3, sp));
    const params = { seed: 5, k: K, vocab: cfg.vocab, width: C };
    const basis = makeBasis(params);
    const sub = makeCodec('subspace', params) as SubspaceCodec;
    const stacked = makeCodec('subspace+int8', params);
    for (const s of [s0, s1]) subspaceInit(gpu, s, basis);
    const { ids } = batch(9);
    const ctx: CodecContext = { ids, kind: 'act' };
    const out0 = s0.forward({ id: 0, batch: B, seq: T, ids }).output!;
    const h0 = (await gpu.read(out0)) as Float32Array;
    gpu.release(out0);
    const input = gpu.upload(stacked.decode(stacked.encode(h0, [rows, C], ctx), [rows, C], ctx), [rows, C]);
    const out1 = s1.forward({ id: 0, batch: B, seq: T, ids, input }).output!;
    const h1 = (await gpu.read(out1)) as Float32Array;
    const off = sub.offSubspace(h1, [rows, C], ctx);
    const rel = relErr(sub.decode(sub.encode(h1, [rows, C], ctx), [rows, C], ctx), h1);
    expect(off).toBeLessThan(1e-5);
    expect(rel).toBeLessThan(1e-5);
    // int8 on the coefficients: error bounded by the per-token coefficient scale
    const y = stacked.decode(stacked.encode(h1, [rows, C], ctx), [rows, C], ctx);
    const stackedRel = relErr(y, h1);
    expect(stackedRel).toBeLessThan(0.05);
    console.log(
      `[compress] 3 stages: stage-1 output off-subspace ${off.toExponential(2)}, subspace rel ` +
        `${rel.toExponential(2)}, subspace+int8 rel ${stackedRel.toExponential(2)}`,
    );
    gpu.release(out1);
    s0.destroy();
    s1.destroy();
  });

  it(
    'with P·g for g, the upstream gradients are unchanged (non-write params) or equal after projection ' + '(writes)',
    async () => {
      const gpu = await testGpu();
      const [spec0, spec1] = splitStages(cfg, 2);
      const s0 = Stage.create(gpu, cfg, spec0);
      const s1 = Stage.create(gpu, cfg, spec1);
      const basis = makeBasis({ seed: 42, k: K, vocab: cfg.vocab, width: C });
      subspaceInit(gpu, s0, basis);
      const { ids, targets } = batch(8);
      const out = s0.forward({ id: 0, batch: B, seq: T, ids }).output!;
      const r = s1.forward({ id: 0, batch: B, seq: T, ids, targets, input: out });
      gpu.release(r.loss, r.logits);
      const dx = s1.backward(0)!;
      const g = (await gpu.read(dx)) as Float32Array;
      gpu.release(dx);
      const codec = makeCodec('subspace', { seed: 42, k: K, vocab: cfg.vocab, width: C });
      const ctx: CodecContext = { ids, kind: 'grad' };
      const pg = codec.decode(codec.encode(g, [rows, C], ctx), [rows, C], ctx);
      expect(relErr(pg, g), 'the gradient itself is not in span(U)').toBeGreaterThan(0.1);

      /** Stage 0's parameter gradients when its output gradient is dy. */
      const grads = async (id: number, dy: Float32Array) => {
        gpu.release(s0.forward({ id, batch: B, seq: T, ids }).output!); // the forward cache keeps what backward needs
        s0.backward(id, gpu.upload(dy, [rows, C]));
        const gs = await s0.readGrads();
        s0.zeroGrads();
        return gs;
      };
      const full = await grads(1, g);
      const comp = await grads(2, pg);

      const P = basis.projector();
      const rightP = (x: Float32Array) => {
        const n = x.length / C;
        const y = new Float64Array(x.length);
        for (let r0 = 0; r0 < n; r0++)
          for (let i = 0; i < C; i++) {
            let s = 0;
            for (let j = 0; j < C; j++) s += x[r0 * C + j] * P[j * C + i];
            y[r0 * C + i] = s;
          }
        return y;
      };
      const writes = new Set(projectedParams(s0));
      let worstFree = 0;
      let worstWrite = 0;
      let writeRawDiff = 0;
      for (const [name, gf] of full) {
        const gc = comp.get(name)!;
        if (maxAbs(gf) === 0) continue;
        if (writes.has(name)) {
          const e = relErr(rightP(gc), rightP(gf));
          worstWrite = Math.max(worstWrite, e);
          writeRawDiff = Math.max(writeRawDiff, relErr(gc, gf));
        } else {
          worstFree = Math.max(worstFree, relErr(gc, gf));
        }
      }
      expect(worstFree).toBeLessThan(1e-4);
      expect(worstWrite).toBeLessThan(1e-4);
      expect(writeRawDiff, 'the write gradients do differ before projection').toBeGreaterThan(1e-2);
      console.log(
        `[compress] gradient through subspace: non-write params rel. diff ${worstFree.toExponential(2)}, ` +
          `write params after ·P ${worstWrite.toExponential(2)} (raw ${writeRawDiff.toExponential(2)})`,
      );
      s0.destroy();
      s1.destroy();
    },
  );

  it('boundary plan: codec per boundary, which stages are constrained', () => {
    const plan = { codec: 'subspace+int8' as const, uncompressedTail: 1 };
    expect([0, 1, 2].map((b) => codecForBoundary(b, 3, plan))).toEqual(['subspace+int8', 'subspace+int8', 'none']);
    expect([0, 1, 2, 3].map((s) => stageNeedsSubspace(s, 4, plan))).toEqual([true, true, false, false]);
    expect([0, 1, 2, 3].map((s) => stageNeedsSubspace(s, 4, { codec: 'subspace' }))).toEqual([true, true, true, false]);
    expect([0, 1].map((s) => stageNeedsSubspace(s, 2, { codec: 'int8' }))).toEqual([false, false]);
    expect(codecForBoundary(0, 2, { codec: 'subspace', uncompressedTail: 1, tailCodec: 'int8' })).toBe('subspace');
    expect(codecForBoundary(1, 2, { codec: 'subspace', uncompressedTail: 1, tailCodec: 'int8' })).toBe('int8');
    const codecs = boundaryCodecs(4, plan, { seed: 1, k: 8, vocab: 37, width: 32 });
    expect(codecs.map((c) => c.name)).toEqual(['subspace+int8', 'subspace+int8', 'none']);
    expect(() => codecForBoundary(3, 3, plan)).toThrow(ArgumentError);
    expect(() => codecForBoundary(0, 3, { codec: 'subspace', tailCodec: 'subspace' })).toThrow(/tailCodec/);
    expect(() => codecForBoundary(0, 3, { codec: 'gzip' as 'none' })).toThrow(/unknown codec/);
  });
});
