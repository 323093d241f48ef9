import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../src/gpu/index.ts';
import {
  CheckpointError,
  loadStage,
  readCheckpoint,
  saveStage,
  type CheckpointProblem,
} from '../../src/model/checkpoint.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { parseSafetensors, serializeSafetensors, type NamedTensor } from '../../src/model/safetensors.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages, type StageSpec } from '../../src/model/stages.ts';
import { Rng } from '../../src/ops/rng.ts';
import { testGpu } from '../gpu-fixture.ts';

const cfg: ModelConfig = { vocab: 53, dModel: 32, heads: 2, layers: 3, context: 16, seed: 5 };
const adam = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
const B = 2;
const T = 16;

function batch(step: number): { ids: Int32Array; targets: Int32Array } {
  const rng = new Rng(77 + step);
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let i = 0; i < ids.length; i++) {
    ids[i] = rng.int(cfg.vocab);
    targets[i] = (ids[i] * 7 + 3) % cfg.vocab;
  }
  return { ids, targets };
}

/** One optimizer step of a whole-model stage, without the pipeline engine; returns the loss. */
async function trainOnce(stage: Stage, step: number): Promise<number> {
  const r = stage.forward({ id: step, batch: B, seq: T, ...batch(step) });
  const loss = (await stage.gpu.read(r.loss!))[0];
  stage.gpu.release(r.loss, r.logits);
  stage.backward(step);
  await stage.applyStep(adam);
  return loss;
}

/** One optimizer step of a middle stage fed a fixed input and output gradient. */
async function trainMiddle(stage: Stage, step: number): Promise<void> {
  const rng = new Rng(500 + step);
  const n = B * T * cfg.dModel;
  const x = Float32Array.from({ length: n }, () => rng.normal());
  const g = Float32Array.from({ length: n }, () => rng.normal() * 0.01);
  const out = stage.forward({ id: step, batch: B, seq: T, input: stage.gpu.upload(x, [B * T, cfg.dModel]) }).output!;
  stage.gpu.release(out);
  stage.backward(step, stage.gpu.upload(g, [B * T, cfg.dModel]));
  await stage.applyStep(adam);
}

async function state(stage: Stage): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, s] of stage.slots) {
    out.set(name, await stage.gpu.readF32(s.param));
    out.set(`m.${name}`, await stage.gpu.readF32(s.m));
    out.set(`v.${name}`, await stage.gpu.readF32(s.v));
  }
  return out;
}

function expectBitExact(a: Map<string, Float32Array>, b: Map<string, Float32Array>): void {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, x] of a) {
    const y = b.get(k)!;
    const same =
      x.length === y.length &&
      new Uint32Array(x.buffer, x.byteOffset, x.length).every(
        (w, i) => w === new Uint32Array(y.buffer, y.byteOffset, y.length)[i],
      );
    expect(same, `${k} differs`).toBe(true);
  }
}

const whole: StageSpec = splitStages({ ...cfg }, 1)[0];

describe('stage checkpoints', () => {
  it('round-trips weights, AdamW moments and step bit-exactly; the loaded stage trains on identically', async () => {
    const gpu = await testGpu();
    const a = Stage.create(gpu, cfg, whole);
    await trainOnce(a, 0);
    await trainOnce(a, 1);
    const bytes = await saveStage(a);
    const meta = (await parseSafetensors(bytes)).metadata;
    expect(meta.format).toBe('tessera-stage');
    expect(meta.optimizer_step).toBe('2');
    expect(meta.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(meta.model_config)).toMatchObject({ vocab: 53, dModel: 32, layers: 3, mlpRatio: 4, seed: 5 });

    const b = await loadStage(gpu, bytes, { cfg, spec: whole });
    expect(b.step).toBe(2);
    expect(b.spec).toEqual(whole);
    expectBitExact(await state(a), await state(b));

    const la = await trainOnce(a, 2);
    const lb = await trainOnce(b, 2);
    expect(lb).toBe(la);
    expect(b.step).toBe(3);
    expectBitExact(await state(a), await state(b));
    a.destroy();
    b.destroy();
  });

  it('round-trips a middle stage (no embedding, no head) and checks its spec', async () => {
    const gpu = await testGpu();
    const specs = splitStages(cfg, 3);
    const a = Stage.create(gpu, cfg, specs[1]);
    await trainMiddle(a, 0);
    const bytes = await saveStage(a);
    const ck = await readCheckpoint(bytes);
    expect(ck.spec).toEqual(specs[1]);
    expect([...ck.params.keys()].every((k) => k.startsWith('h.1.'))).toBe(true);
    const b = await loadStage(gpu, bytes, { cfg, spec: specs[1] });
    expectBitExact(await state(a), await state(b));
    await trainMiddle(a, 1);
    await trainMiddle(b, 1);
    expectBitExact(await state(a), await state(b));
    await expect(loadStage(gpu, bytes, { cfg, spec: specs[2] })).rejects.toMatchObject({ problem: 'spec' });
    a.destroy();
    b.destroy();
  });

  describe('bad input: rejected with its reason, nothing allocated, everything else unaffected', () => {
    let gpu: Gpu;
    let good: Uint8Array;
    let source: Stage;
    /** Rewrites the good checkpoint's tensors/metadata and re-serialises it (with a valid hash). */
    async function tamper(
      edit: (t: Map<string, NamedTensor>, meta: Record<string, string>) => void,
    ): Promise<Uint8Array> {
      const p = await parseSafetensors(good);
      const meta = { ...p.metadata };
      delete meta.sha256;
      edit(p.tensors, meta);
      return serializeSafetensors(p.tensors, meta);
    }

    const cases: Array<
      [
        string,
        CheckpointProblem,
        RegExp,
        () => Promise<{ bytes: Uint8Array; expect?: { cfg?: ModelConfig; spec?: StageSpec } }>,
      ]
    > = [
      [
        'a flipped data byte',
        'hash',
        /content hash mismatch/,
        async () => {
          const bytes = good.slice();
          bytes[bytes.length - 5] ^= 0x10;
          return { bytes };
        },
      ],
      [
        'no content hash',
        'hash',
        /no content hash/,
        async () => {
          const p = await parseSafetensors(good);
          // Re-serialise, then drop the hash from the header by hand (same length: rename the key).
          const bytes = await serializeSafetensors(p.tensors, { ...p.metadata });
          const text = new TextDecoder().decode(bytes);
          const at = text.indexOf('"sha256"');
          bytes.set(new TextEncoder().encode('"xha256"'), at);
          return { bytes };
        },
      ],
      [
        'a truncated file',
        'hash',
        /content hash mismatch/,
        async () => ({ bytes: good.subarray(0, good.length - 64) }),
      ],
      [
        'a broken header length',
        'corrupt',
        /header length/,
        async () => {
          const bytes = good.slice();
          bytes[5] = 0xff;
          return { bytes };
        },
      ],
      [
        'a wrong shape',
        'shape',
        /h\.0\.attn\.proj\.w has shape \[16,64\], expected \[32,32\]/,
        async () => ({
          bytes: await tamper((t) => {
            t.get('h.0.attn.proj.w')!.shape = [16, 64];
          }),
        }),
      ],
      [
        'a wrong dtype',
        'dtype',
        /m\.lnf\.b is F64, expected F32/,
        async () => ({
          bytes: await tamper((t) => {
            const x = t.get('m.lnf.b')!;
            t.set('m.lnf.b', { shape: x.shape, data: Float64Array.from(x.data as Float32Array) });
          }),
        }),
      ],
      [
        'a missing moment',
        'missing',
        /v\.h\.2\.mlp\.fc\.b \[128\] is missing/,
        async () => ({
          bytes: await tamper((t) => {
            t.delete('v.h.2.mlp.fc.b');
          }),
        }),
      ],
      [
        'an extra tensor',
        'extra',
        /h\.3\.ln1\.w does not belong/,
        async () => ({
          bytes: await tamper((t) => {
            t.set('h.3.ln1.w', { shape: [32], data: new Float32Array(32) });
          }),
        }),
      ],
      [
        'a NaN weight',
        'nonfinite',
        /wpe element 7 is NaN/,
        async () => ({
          bytes: await tamper((t) => {
            (t.get('wpe')!.data as Float32Array)[7] = NaN;
          }),
        }),
      ],
      [
        'another model config than expected',
        'config',
        /dModel 32 \(expected 64\)/,
        async () => ({
          bytes: good,
          expect: { cfg: { ...cfg, dModel: 64 } },
        }),
      ],
      [
        'another seed than expected',
        'config',
        /seed 5 \(expected 6\)/,
        async () => ({ bytes: good, expect: { cfg: { ...cfg, seed: 6 } } }),
      ],
      [
        'a malformed config',
        'config',
        /not divisible by heads/,
        async () => ({
          bytes: await tamper((_, meta) => {
            meta.model_config = JSON.stringify({ ...cfg, heads: 3 });
          }),
        }),
      ],
      [
        'an inconsistent stage spec',
        'spec',
        /hasHead must be true/,
        async () => ({
          bytes: await tamper((_, meta) => {
            meta.stage_spec = JSON.stringify({ ...whole, hasHead: false });
          }),
        }),
      ],
      [
        'not a stage checkpoint',
        'format',
        /format is/,
        async () => ({
          bytes: await tamper((_, meta) => {
            delete meta.format;
          }),
        }),
      ],
      [
        'a future format version',
        'format',
        /format_version "2"/,
        async () => ({
          bytes: await tamper((_, meta) => {
            meta.format_version = '2';
          }),
        }),
      ],
    ];

    it.each(cases)('%s → %s', async (_, problem, message, make) => {
      gpu ??= await testGpu();
      if (!source) {
        source = Stage.create(gpu, cfg, whole);
        await trainOnce(source, 0);
        good = await saveStage(source);
      }
      const before = await state(source);
      const { bytes, expect: want } = await make();
      const live = gpu.pool.stats.liveBytes;
      const err = await loadStage(gpu, bytes, want ?? { cfg, spec: whole }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as CheckpointError).problem).toBe(problem);
      expect((err as CheckpointError).code).toBe('checkpoint');
      expect((err as Error).message).toMatch(message);
      expect(gpu.pool.stats.liveBytes, 'a refused checkpoint allocates nothing').toBe(live);
      // Nothing else broke: the source stage is untouched and the good file still loads.
      expectBitExact(before, await state(source));
      const again = await loadStage(gpu, good, { cfg, spec: whole });
      expectBitExact(before, await state(again));
      again.destroy();
    });
  });
});
