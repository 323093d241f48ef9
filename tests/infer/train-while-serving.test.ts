/**
 * A stage holder trains and serves inference on the same Stage (the same weights, the same Gpu and buffer pool). An
 * `npm start` log showed a training step's loss and a concurrent validation both ~3.6 nats high, which looked like
 * inference and training sharing a buffer. They do not (the spike is the training run's own: step 30 of the software
 * preset is 10.7193 with no inference at all), and these tests keep it that way: inference requests on both runtimes
 * (WGSL on the live weights, onnxruntime-web re-exporting them after each update), run between every unit of
 * training and concurrently with the loss read-back, leave every loss, gradient norm and weight bit-identical to
 * training alone; and each WGSL answer, given mid-step, is bit-identical to the same request on an idle copy of the
 * stage with the same weights.
 */
import { describe, expect, test } from 'vitest';
import type { Gpu } from '../../src/gpu/index.ts';
import { OnnxRuntime, WgslRuntime, type StageRuntime } from '../../src/infer/stage-runtime.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages } from '../../src/model/stages.ts';
import { gradNorm } from '../../src/ops/gradclip.ts';
import { Rng } from '../../src/ops/rng.ts';
import { testGpu } from '../gpu-fixture.ts';
import { CFG, modelWeights } from './fixtures.ts';

const ADAM = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const BATCH = 2;
const STEPS = 3;
const MICROS = 2;

/** Seeded training data and inference requests for stage `index` of CFG split in 4. */
function data(index: number) {
  const rng = new Rng(7 + index);
  const rows = BATCH * CFG.context;
  const ids = () => Int32Array.from({ length: rows }, () => rng.int(CFG.vocab));
  const acts = (n: number) => Float32Array.from({ length: n * CFG.dModel }, () => rng.normal());
  const micro = Array.from({ length: STEPS * MICROS }, () => ({
    ids: ids(),
    targets: ids(),
    input: acts(rows),
    grad: acts(rows),
  }));
  // A scoring request as the coordinator's validation sends it: one whole sequence, every row's logits.
  const request = index === 0 ? Int32Array.from(ids().subarray(0, CFG.context)) : acts(CFG.context);
  return { micro, request };
}

interface Trace {
  losses: number[];
  norms: number[];
  weights: Map<string, Float32Array>;
  /** WGSL answers given mid-step, and what an idle copy of the stage with the same weights answered. */
  served: Array<[Float32Array, Float32Array]>;
}

type Serve = 'none' | 'between' | 'concurrent';

/**
 * STEPS synchronous steps of MICROS micro-batches on one stage, unit by unit as StageRun runs them (forward with its
 * loss read-back, backward, gradient norm, update); with `serve`, inference requests on both runtimes between every
 * unit, or started before the unit's read-back and awaited after it.
 */
async function train(gpu: Gpu, index: number, serve: Serve): Promise<Trace> {
  const spec = splitStages(CFG, 4)[index];
  const stage = Stage.create(gpu, CFG, spec, modelWeights(CFG));
  const { micro, request } = data(index);
  const rows = BATCH * CFG.context;
  const trace: Trace = { losses: [], norms: [], weights: new Map(), served: [] };
  const wgsl = new WgslRuntime(stage, { maxSessions: 4 });
  const onnx = serve === 'none' ? undefined : await OnnxRuntime.create(stage, { maxSessions: 4 });
  let n = 0;
  const ask = async (rt: StageRuntime) => {
    const session = `val-${n++}`;
    const r = await rt.step(session, request, true, { logits: 'all' });
    rt.end(session);
    return (r.output ?? r.logits)!;
  };
  /** One request to each runtime; the WGSL answer is checked against an idle copy of the stage afterwards. */
  const infer = async () => {
    if (serve === 'none') return;
    // Both queued in one synchronous pass: the weights read back are the ones the WGSL request computes with.
    const read = stage.readParams();
    const [live, , weights] = await Promise.all([ask(wgsl), ask(onnx!), read]);
    const twin = Stage.create(gpu, CFG, spec, weights);
    const idle = new WgslRuntime(twin, { maxSessions: 1 });
    trace.served.push([live, await ask(idle)]);
    idle.destroy();
    twin.destroy();
  };
  /** A unit of training work, with inference before it, or overlapping its read-back. */
  const unit = async <T>(encode: () => Promise<T>): Promise<T> => {
    if (serve === 'between') await infer();
    if (serve !== 'concurrent') return encode();
    const serving = infer();
    const r = await encode();
    await serving;
    return r;
  };
  try {
    for (let k = 0; k < STEPS; k++) {
      for (let m = 0; m < MICROS; m++) {
        const d = micro[k * MICROS + m];
        const input = spec.hasEmbedding ? undefined : gpu.upload(d.input, [rows, CFG.dModel]);
        await unit(async () => {
          const r = stage.forward({ id: m, batch: BATCH, seq: CFG.context, ids: d.ids, targets: d.targets, input });
          if (r.loss) trace.losses.push((await gpu.read(r.loss))[0]);
          else trace.losses.push((await gpu.read(r.output!))[0]);
          gpu.release(r.loss, r.logits, r.output);
        });
      }
      for (let m = MICROS - 1; m >= 0; m--) {
        const d = micro[k * MICROS + m];
        await unit(async () => {
          const grad = spec.hasHead ? undefined : gpu.upload(d.grad, [rows, CFG.dModel]);
          const dx = stage.backward(m, grad, 1 / MICROS);
          if (dx) trace.losses.push((await gpu.read(dx))[7]);
          gpu.release(dx);
          await gpu.sync();
        });
      }
      await unit(async () => {
        const norm = gradNorm(gpu, stage.grads());
        trace.norms.push((await gpu.read(norm))[0]);
        gpu.release(norm);
      });
      await unit(async () => {
        await stage.applyStep(ADAM);
        await gpu.sync();
      });
    }
    await unit(async () => {});
    trace.weights = await stage.readParams();
    return trace;
  } finally {
    wgsl.destroy();
    onnx?.destroy();
    stage.destroy();
  }
}

function expectSame(a: Trace, b: Trace): void {
  expect(b.losses).toEqual(a.losses);
  expect(b.norms).toEqual(a.norms);
  expect([...b.weights.keys()]).toEqual([...a.weights.keys()]);
  for (const [name, w] of a.weights) expect(b.weights.get(name), name).toEqual(w);
}

describe('training while serving inference on the same stage', () => {
  for (const index of [0, 3]) {
    test(`stage ${index}/4: inference between and during training units changes nothing; answered right`, async () => {
      const gpu = await testGpu();
      const alone = await train(gpu, index, 'none');
      // The training itself moved the weights and every number is finite: the comparisons are not vacuous.
      expect(alone.losses.every(Number.isFinite)).toBe(true);
      expect(alone.norms.every((x) => x > 0)).toBe(true);
      for (const serve of ['between', 'concurrent'] as const) {
        const served = await train(gpu, index, serve);
        expectSame(alone, served);
        expect(served.served.length).toBeGreaterThan(STEPS * (2 * MICROS + 2));
        for (const [live, idle] of served.served) expect(live).toEqual(idle);
      }
    }, 120_000);
  }
});
