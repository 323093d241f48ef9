/**
 * onnxruntime-web against our WGSL Stage.forward, one stage at a time, on the same machine (issue 7, point 5:
 * a peer measures both and serves inference with the faster). For `npm run bench:infer`.
 *
 * Both sides are timed the way a stage serves a request: host input in, host output out.
 *  - WGSL: upload ids/activations, Stage.forward, read the output back (wall clock, the GPU drained by the
 *    read). The last stage also computes its cross-entropy (Stage.forward needs targets), O(rows·vocab)
 *    against the head's O(rows·dModel·vocab).
 *  - ORT: session.run with CPU tensors (wall clock), output copied back to JS.
 * Per shape, both are created and warmed up, then timed in interleaved rounds (alternating which goes first),
 * so load from other processes falls on both alike; medians. The outputs are compared (max |ORT − WGSL|).
 */
import { adapterLabel, type Gpu } from '../src/gpu/index.ts';
import { OnnxStageRunner, type OnnxStageRunnerOptions } from '../src/infer/onnx-stage.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { stageForwardFlops } from '../src/model/flops.ts';
import { Stage } from '../src/model/stage.ts';
import { splitStages } from '../src/model/stages.ts';
import { Rng } from '../src/ops/rng.ts';
import { median } from './cases.ts';
import { table } from '../src/cli/table.ts';

export interface StageRuntimeShape {
  batch: number;
  seq: number;
}

export interface CompareStageRuntimesOptions {
  /** Split cfg into this many stages (default 2). */
  stages?: number;
  /** Which stages to time (default all). */
  stageIndices?: number[];
  /** Default: one short sequence and a batch of full-context ones. */
  shapes?: StageRuntimeShape[];
  /** Untimed runs per runtime and shape (default 2). */
  warmup?: number;
  /** Timed runs per runtime and shape (default 7). */
  repeats?: number;
  /** Passed to OnnxStageRunner (default: wasm in Node, webgpu then wasm in a browser). */
  executionProviders?: OnnxStageRunnerOptions['executionProviders'];
  numThreads?: number;
  log?: (line: string) => void;
}

export interface StageRuntimeRow {
  stage: number;
  stages: number;
  layers: number;
  embedding: boolean;
  head: boolean;
  batch: number;
  seq: number;
  /** Forward FLOPs of the stage for this shape (src/model/flops.ts). */
  gflop: number;
  /** Our side: the WebGPU adapter Stage ran on. */
  wgslDevice: string;
  /** ORT's side: the execution provider its session got. */
  ortEp: string;
  ortThreads?: number;
  wgslMs: number;
  wgslMinMs: number;
  ortMs: number;
  ortMinMs: number;
  /** wgslMs / ortMs: > 1 means ORT is faster. */
  ortSpeedup: number;
  faster: 'onnx' | 'wgsl';
  /** max |ORT − WGSL| over the output (activations, or logits at the last stage). */
  maxAbsErr: number;
  warmup: number;
  repeats: number;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return a.length === b.length ? m : Infinity;
}

/** Times ORT vs WGSL forward of each chosen stage of `cfg` (seeded initial weights) at each shape. */
export async function compareStageRuntimes(
  gpu: Gpu,
  cfg: ModelConfig,
  opts: CompareStageRuntimesOptions = {},
): Promise<StageRuntimeRow[]> {
  const specs = splitStages(cfg, opts.stages ?? 2);
  const chosen = opts.stageIndices ?? specs.map((s) => s.index);
  const shapes = opts.shapes ?? [
    { batch: 1, seq: Math.min(32, cfg.context) },
    { batch: 4, seq: cfg.context },
  ];
  const warmup = opts.warmup ?? 2;
  const repeats = opts.repeats ?? 7;
  const log = opts.log ?? (() => {});
  const rows: StageRuntimeRow[] = [];
  const rng = new Rng(cfg.seed ?? 0);
  let id = 0;
  for (const index of chosen) {
    const spec = specs[index];
    if (!spec) throw new RangeError(`compareStageRuntimes: no stage ${index} of ${specs.length}`);
    const stage = Stage.create(gpu, cfg, spec);
    const runner = await OnnxStageRunner.fromStage(stage, {
      executionProviders: opts.executionProviders,
      numThreads: opts.numThreads,
    });
    try {
      for (const { batch, seq } of shapes) {
        const n = batch * seq;
        const ids = spec.hasEmbedding ? Int32Array.from({ length: n }, () => rng.int(cfg.vocab)) : undefined;
        const input = spec.hasEmbedding ? undefined : Float32Array.from({ length: n * cfg.dModel }, () => rng.normal());
        const targets = spec.hasHead ? new Int32Array(n) : undefined;
        const wgsl = async (): Promise<Float32Array> => {
          const mbId = id++;
          const x = input ? gpu.upload(input, [n, cfg.dModel], 'f32', 'bench.input') : undefined;
          const out = stage.forward({ id: mbId, batch, seq, ids, targets, input: x });
          const data = (await gpu.read(spec.hasHead ? out.logits! : out.output!)) as Float32Array;
          gpu.release(...[out.output, out.logits, out.loss].filter((t) => t !== undefined));
          stage.discard(mbId);
          return data;
        };
        const ort = () => runner.forward({ batch, seq, ids, input });
        const a = await wgsl();
        const b = await ort();
        for (let i = 1; i < warmup; i++) {
          await wgsl();
          await ort();
        }
        const tw: number[] = [];
        const to: number[] = [];
        const time = async (fn: () => Promise<unknown>, into: number[]) => {
          const t0 = performance.now();
          await fn();
          into.push(performance.now() - t0);
        };
        for (let r = 0; r < repeats; r++) {
          if (r % 2) {
            await time(ort, to);
            await time(wgsl, tw);
          } else {
            await time(wgsl, tw);
            await time(ort, to);
          }
        }
        const wgslMs = median(tw);
        const ortMs = median(to);
        const row: StageRuntimeRow = {
          stage: index,
          stages: specs.length,
          layers: spec.endLayer - spec.firstLayer,
          embedding: spec.hasEmbedding,
          head: spec.hasHead,
          batch,
          seq,
          gflop: (batch * stageForwardFlops(cfg, spec, seq)) / 1e9,
          wgslDevice: adapterLabel(gpu.adapter),
          ortEp: runner.executionProvider,
          ortThreads: opts.numThreads,
          wgslMs,
          wgslMinMs: Math.min(...tw),
          ortMs,
          ortMinMs: Math.min(...to),
          ortSpeedup: wgslMs / ortMs,
          faster: ortMs < wgslMs ? 'onnx' : 'wgsl',
          maxAbsErr: maxAbsDiff(a, b),
          warmup,
          repeats,
        };
        log(
          `stage ${index}/${specs.length} b${batch}×t${seq}: WGSL ${wgslMs.toFixed(2)} ms, ORT(${row.ortEp}) ` +
            `${ortMs.toFixed(2)} ms, max |Δ| ${row.maxAbsErr.toExponential(1)}`,
        );
        rows.push(row);
      }
    } finally {
      stage.destroy();
      await runner.release();
    }
  }
  return rows;
}

/** Markdown table of the rows (src/cli/table.ts style). */
export function stageRuntimeTable(rows: readonly StageRuntimeRow[]): string {
  const what = (r: StageRuntimeRow) =>
    [r.embedding ? 'emb' : '', `${r.layers} blk`, r.head ? 'head' : ''].filter(Boolean).join('+');
  return table(
    ['stage', 'holds', 'batch×seq', 'GFLOP', 'WGSL ms', 'ORT ms', 'ORT EP', 'WGSL/ORT', 'faster', 'max |Δ|'],
    rows.map((r) => [
      `${r.stage}/${r.stages}`,
      what(r),
      `${r.batch}×${r.seq}`,
      r.gflop.toFixed(3),
      r.wgslMs.toFixed(2),
      r.ortMs.toFixed(2),
      r.ortEp,
      `${r.ortSpeedup.toFixed(2)}×`,
      r.faster === 'onnx' ? 'ORT' : 'WGSL',
      r.maxAbsErr.toExponential(1),
    ]),
    ['l', 'l', 'r'],
  );
}
