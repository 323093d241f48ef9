import { describe, expect, it } from 'vitest';
import { compareStageRuntimes, stageRuntimeTable } from '../../bench/onnx-stage.ts';
import { encodeVarint } from '../../src/infer/onnx-proto.ts';
import { exportStageOnnx, OnnxStageRunner, stageOnnxModel } from '../../src/infer/onnx-stage.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { stageParamSpecs } from '../../src/model/params.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages, type StageSpec } from '../../src/model/stages.ts';
import { compare, type Comparison } from '../../src/ops/compare.ts';
import { Rng } from '../../src/ops/rng.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';

// float32 tolerance for ORT (wasm EP) against our WGSL forward: both compute in float32, in different orders.
// Seen: max |err| ≤ 1.3e-5 (typically ~1e-6). The weights below are large enough that a graph with the erf GELU
// instead of ours (tanh) fails by 1–3e-3, so the tolerance tells the variants apart.
const TOL = { atol: 1e-4, rtol: 1e-3 };
const cfg: ModelConfig = { vocab: 67, dModel: 32, heads: 4, layers: 3, context: 16, seed: 11 };
const B = 2;
const T = 12; // < context: the graph slices wpe and the causal mask to T

/**
 * Random weights for every tensor of the model, including biases and LayerNorm gains/shifts (the seeded init
 * has zero biases and unit gains, which would hide a mis-wired bias or gain).
 */
function randomWeights(spec: StageSpec): Map<string, Float32Array> {
  const w = new Map<string, Float32Array>();
  for (const ps of stageParamSpecs(cfg, spec)) {
    const rng = new Rng(ps.name.length * 7919 + ps.name.charCodeAt(ps.name.length - 1));
    const n = ps.shape.reduce((a, b) => a * b, 1);
    const base = ps.init.kind === 'ones' ? 1 : 0;
    const std = ps.init.kind === 'normal' ? 0.25 : 0.2;
    w.set(
      ps.name,
      Float32Array.from({ length: n }, () => base + std * rng.normal()),
    );
  }
  return w;
}

function tokens(seed: number, n = B * T): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: n }, () => rng.int(cfg.vocab));
}

/**
 * Runs the stages in a chain on both runtimes; each ONNX stage gets the same input as the WGSL stage (the WGSL
 * chain's activations), so a stage's comparison is not blurred by the previous stage's rounding. The ONNX
 * chain is also run on its own outputs end to end, and its logits compared with the WGSL chain's.
 */
async function compareChain(specs: StageSpec[], seq = T): Promise<Comparison[]> {
  const gpu = await testGpu();
  const results: Comparison[] = [];
  const ids = tokens(seq, B * seq);
  let act: Float32Array | undefined;
  let own: Float32Array | undefined;
  for (const spec of specs) {
    const stage = Stage.create(gpu, cfg, spec, randomWeights(spec));
    const runner = await OnnxStageRunner.fromStage(stage);
    expect(runner.executionProvider).toBe('wasm');
    const input = act ? gpu.upload(act, [B * seq, cfg.dModel], 'f32', 'input') : undefined;
    const out = stage.forward({
      id: 1,
      batch: B,
      seq,
      ids: spec.hasEmbedding ? ids : undefined,
      input,
      targets: spec.hasHead ? new Int32Array(B * seq) : undefined,
    });
    const ours = (await gpu.read(spec.hasHead ? out.logits! : out.output!)) as Float32Array;
    const onnx = await runner.forward({ batch: B, seq, ids: spec.hasEmbedding ? ids : undefined, input: act });
    expect(onnx.length).toBe(B * seq * (spec.hasHead ? cfg.vocab : cfg.dModel));
    results.push(
      compare(
        `stage ${spec.index}/${spec.count} ${spec.hasHead ? 'logits' : 'activations'} (seq ${seq})`,
        onnx,
        ours,
        TOL,
      ),
    );
    own = spec.hasEmbedding ? onnx : await runner.forward({ batch: B, seq, input: own });
    if (spec.hasHead)
      results.push(compare(`end to end: ${spec.count}-stage ONNX chain logits (seq ${seq})`, own, ours, TOL));
    gpu.release(...[out.output, out.logits, out.loss].filter((t) => t !== undefined));
    stage.discard(1);
    stage.destroy();
    await runner.release();
    act = ours;
  }
  return results;
}

describe('onnx protobuf encoding', () => {
  it('writes varints, negative int64s as 10 bytes', () => {
    expect([...encodeVarint(1)]).toEqual([1]);
    expect([...encodeVarint(300)]).toEqual([0xac, 0x02]);
    expect([...encodeVarint(-1)]).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  });
});

describe('onnxruntime-web stage forward (wasm EP) equals the WGSL Stage.forward', () => {
  it('2 stages: embedding + 2 blocks, then 1 block + head (activations and logits)', async () => {
    expectAllPass(await compareChain(splitStages(cfg, 2)));
  });

  it('3 stages of one block each, at full context and at seq 1', async () => {
    const specs = splitStages(cfg, 3);
    expectAllPass([...(await compareChain(specs, cfg.context)), ...(await compareChain(specs, 1))]);
  });

  it('a stage with no blocks (embedding only) and a fixed-shape export', async () => {
    expectAllPass(await compareChain(splitStages(cfg, 2, [0, 3])));
    const [spec] = splitStages(cfg, 2, [0, 3]);
    const runner = await OnnxStageRunner.create(cfg, spec, randomWeights(spec), { batch: 1, seq: 4 });
    expect((await runner.forward({ batch: 1, seq: 4, ids: Int32Array.of(1, 2, 3, 4) })).length).toBe(4 * cfg.dModel);
    await expect(runner.forward({ batch: 1, seq: 5, ids: new Int32Array(5) })).rejects.toThrow(
      /exported for seq 4, got 5/,
    );
    await runner.release();
  });
});

describe('onnx stage: bad input gets a clear error', () => {
  it('wrong shapes, wrong kinds, out-of-range tokens, missing weights', async () => {
    const [first, last] = splitStages(cfg, 2);
    const r0 = await OnnxStageRunner.create(cfg, first, randomWeights(first));
    const r1 = await OnnxStageRunner.create(cfg, last, randomWeights(last));
    await expect(r0.forward({ batch: B, seq: T, ids: new Int32Array(B * T - 1) })).rejects.toThrow(
      /needs 24 token ids \(batch 2 × seq 12\), got 23/,
    );
    await expect(r0.forward({ batch: B, seq: T })).rejects.toThrow(/needs token ids/);
    await expect(r0.forward({ batch: B, seq: T, input: new Float32Array(B * T * cfg.dModel) })).rejects.toThrow(
      /pass ids, not activations/,
    );
    await expect(r0.forward({ batch: 1, seq: 2, ids: Int32Array.of(3, cfg.vocab) })).rejects.toThrow(
      /token id 67 at position 1 is outside \[0, 67\)/,
    );
    await expect(r0.forward({ batch: 1, seq: cfg.context + 1, ids: new Int32Array(cfg.context + 1) })).rejects.toThrow(
      /seq must be an integer in 1\.\.16/,
    );
    await expect(r1.forward({ batch: B, seq: T, input: new Float32Array(B * T * (cfg.dModel + 1)) })).rejects.toThrow(
      /input must be \[24, 32\]/,
    );
    await expect(r1.forward({ batch: 0, seq: T, input: new Float32Array(0) })).rejects.toThrow(
      /batch must be a positive integer/,
    );
    await expect(r1.forward({ batch: B, seq: T, ids: tokens(1) })).rejects.toThrow(/not token ids/);
    await r0.release();
    await r1.release();
    await expect(
      OnnxStageRunner.create(cfg, first, randomWeights(first), { executionProviders: ['no-such-ep'] }),
    ).rejects.toThrow(/no execution provider could load the model \(no-such-ep: /);

    const w = randomWeights(last);
    w.delete('h.2.mlp.fc.b');
    expect(() => exportStageOnnx(cfg, last, w)).toThrow(/weight h\.2\.mlp\.fc\.b is missing/);
    w.set('h.2.mlp.fc.b', new Float32Array(3));
    expect(() => stageOnnxModel(cfg, last, w)).toThrow(/h\.2\.mlp\.fc\.b has 3 values for shape \[128\]/);
    expect(() => stageOnnxModel(cfg, last, randomWeights(last), { seq: cfg.context + 1 })).toThrow(
      /seq must be an integer/,
    );
  });
});

describe('bench: compareStageRuntimes', () => {
  it('returns one row per stage and shape, outputs agreeing', async () => {
    const rows = await compareStageRuntimes(await testGpu(), cfg, {
      stages: 2,
      shapes: [{ batch: 1, seq: 8 }],
      warmup: 1,
      repeats: 1,
    });
    expect(rows.map((r) => [r.stage, r.batch, r.seq, r.ortEp])).toEqual([
      [0, 1, 8, 'wasm'],
      [1, 1, 8, 'wasm'],
    ]);
    for (const r of rows) {
      expect(r.wgslMs).toBeGreaterThan(0);
      expect(r.ortMs).toBeGreaterThan(0);
      expect(r.maxAbsErr).toBeLessThan(1e-4);
    }
    expect(stageRuntimeTable(rows)).toContain('| 1/2   | 1 blk+head |');
  });
});
