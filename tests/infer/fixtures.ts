import type { Gpu, Tensor } from '../../src/gpu/index.ts';
import { StageInference, type StageInferenceOptions, type StageStepResult } from '../../src/infer/stage-infer.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { stageParamSpecs } from '../../src/model/params.ts';
import { Stage } from '../../src/model/stage.ts';
import { splitStages } from '../../src/model/stages.ts';
import { Rng } from '../../src/ops/rng.ts';

/** Small enough for lavapipe; 4 layers so 4 stages hold one block each. */
export const CFG: ModelConfig = { vocab: 48, dModel: 32, heads: 2, layers: 4, context: 32, seed: 5 };

/**
 * Weights of the whole model, wider than the 0.02 initialisation so attention is far from uniform and the
 * logits far from tied: a cache bug (wrong position, wrong mask) then changes the tokens, not only the noise.
 */
export function modelWeights(cfg: ModelConfig, seed = 11): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const ps of stageParamSpecs(cfg, splitStages(cfg, 1)[0])) {
    const n = ps.shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++)
      a[i] = ps.init.kind === 'ones' ? 1 + 0.1 * rng.normal() : (ps.init.kind === 'zeros' ? 0.05 : 0.25) * rng.normal();
    out.set(ps.name, a);
  }
  return out;
}

/** The model split into `count` stages, all from the same weights. */
export function buildStages(gpu: Gpu, count: number, cfg = CFG, weights = modelWeights(cfg)): Stage[] {
  return splitStages(cfg, count).map((spec) => Stage.create(gpu, cfg, spec, weights));
}

let nextId = 1_000_000;

/** Logits [L, vocab] of the whole sequence by Stage.forward through the chain, without any cache. */
export async function fullForwardLogits(stages: Stage[], ids: number[]): Promise<Float32Array> {
  const id = nextId++;
  const L = ids.length;
  let input: Tensor | undefined;
  let logits: Tensor | undefined;
  for (const s of stages) {
    const r = s.forward({ id, batch: 1, seq: L, ids: Int32Array.from(ids), targets: new Int32Array(L), input });
    input = r.output;
    if (r.logits) {
      logits = r.logits;
      s.gpu.release(r.loss);
    }
  }
  const gpu = stages[0].gpu;
  const out = (await gpu.read(logits!)) as Float32Array;
  gpu.release(logits);
  for (const s of stages) s.discard(id);
  return out;
}

/** One StageInference per stage, chained in this process as the pipeline would chain them over the network. */
export class Chain {
  readonly stages: StageInference[];
  constructor(stages: Stage[], opts: StageInferenceOptions) {
    this.stages = stages.map((s) => new StageInference(s, opts));
  }

  private run(step: (s: StageInference, input: Int32Array | Tensor) => StageStepResult, ids: number[]): Tensor {
    let x: Int32Array | Tensor = Int32Array.from(ids);
    for (const s of this.stages) {
      const r = step(s, x);
      x = (r.output ?? r.logits)!;
    }
    return x as Tensor;
  }

  async prefill(session: string, ids: number[]): Promise<Float32Array> {
    return this.read(this.run((s, x) => s.prefill(session, x), ids));
  }

  async decode(session: string, ids: number[]): Promise<Float32Array> {
    return this.read(this.run((s, x) => s.decode(session, x), ids));
  }

  private async read(t: Tensor): Promise<Float32Array> {
    const gpu = this.stages[0].stage.gpu;
    const out = (await gpu.read(t)) as Float32Array;
    gpu.release(t);
    return out;
  }

  destroy(): void {
    for (const s of this.stages) s.destroy();
  }
}

/** Row r of a [rows, n] matrix. */
export function row(m: Float32Array, r: number, n: number): Float32Array {
  return m.subarray(r * n, (r + 1) * n);
}
