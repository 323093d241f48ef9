import { describe, expect, it } from 'vitest';
import { ContextLengthError, UnknownSessionError } from '../../src/infer/kv-cache.ts';
import { stageCachedOnnxModel } from '../../src/infer/onnx-infer.ts';
import { greedy } from '../../src/infer/sample.ts';
import {
  chooseRuntime,
  measureRuntimes,
  OnnxRuntime,
  RUNTIME_AGREEMENT,
  WgslRuntime,
  type StageRuntime,
  type StageRuntimeStep,
} from '../../src/infer/stage-runtime.ts';
import { splitStages } from '../../src/model/stages.ts';
import { Stage } from '../../src/model/stage.ts';
import { compare, type Comparison } from '../../src/ops/compare.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';
import { buildStages, CFG, modelWeights } from './fixtures.ts';

// Both runtimes compute in float32 in different orders (the ORT wasm EP against our WGSL kernels on lavapipe).
const TOL = { atol: 1e-4, rtol: 1e-3 };
const OPTS = { maxSessions: 4 };
const PROMPT = [5, 17, 3, 44, 9, 30, 2];

/**
 * Runs `ids` through a chain of runtimes: the prompt (in chunks of `chunk` when given), then the rest one position at a
 * time.
 */
async function runChain(
  chain: StageRuntime[],
  session: string,
  steps: Int32Array[],
  creates: boolean[],
): Promise<StageRuntimeStep[][]> {
  const outs: StageRuntimeStep[][] = chain.map(() => []);
  for (let k = 0; k < steps.length; k++) {
    let x: Int32Array | Float32Array = steps[k];
    for (let s = 0; s < chain.length; s++) {
      const r = await chain[s].step(session, x, creates[k]);
      outs[s].push(r);
      x = (r.output ?? r.logits)!;
    }
  }
  return outs;
}

describe('KV-cached ONNX stage (wasm EP) agrees with WGSL StageInference', () => {
  it('stage 0, a middle stage and the last stage: chunked prefill, then decode', async () => {
    const gpu = await testGpu();
    const stages = buildStages(gpu, 3); // 4 layers: emb+blocks | block(s) | block(s)+head
    const wgsl = stages.map((s) => new WgslRuntime(s, OPTS));
    const onnx = await Promise.all(stages.map((s) => OnnxRuntime.create(s, OPTS)));
    expect(onnx.map((r) => r.name)).toEqual(['onnx-wasm', 'onnx-wasm', 'onnx-wasm']);
    // Prompt in two chunks (4 + 3 positions, the second continuing the open session), then 4 decode steps.
    const steps = [PROMPT.slice(0, 4), PROMPT.slice(4), [11], [12], [40], [0]].map((a) => Int32Array.from(a));
    const creates = [true, true, false, false, false, false];
    const ours = await runChain(wgsl, 'a', steps, creates);
    const results: Comparison[] = [];
    // Each ONNX stage is fed the WGSL stage's input, so each stage is compared on its own.
    for (let s = 0; s < stages.length; s++) {
      for (let k = 0; k < steps.length; k++) {
        const input = s === 0 ? steps[k] : ours[s - 1][k].output!;
        const r = await onnx[s].step('a', input, creates[k]);
        const want = ours[s][k];
        expect([r.start, r.length]).toEqual([want.start, want.length]);
        const what = stages[s].spec.hasHead ? 'logits' : 'activations';
        results.push(
          compare(`stage ${s}/3 step ${k} ${what}`, (r.output ?? r.logits)!, (want.output ?? want.logits)!, TOL),
        );
      }
    }
    expect(ours[2][5].logits!.length).toBe(CFG.vocab);
    expect(ours[1][0].output!.length).toBe(4 * CFG.dModel);
    expectAllPass(results);
    for (const r of [...wgsl, ...onnx]) r.destroy();
    for (const s of stages) s.destroy();
  });

  it('greedy tokens through 2 stages on ONNX equal those on WGSL', async () => {
    const gpu = await testGpu();
    const generate = async (chain: StageRuntime[]) => {
      const tokens: number[] = [];
      let input = Int32Array.from(PROMPT);
      for (let i = 0; i < 12; i++) {
        const [, last] = await runChain(chain, 'g', [input], [i === 0]);
        tokens.push(greedy(last[0].logits!));
        input = Int32Array.of(tokens[i]);
      }
      return tokens;
    };
    const stages = buildStages(gpu, 2);
    const wgsl = stages.map((s) => new WgslRuntime(s, OPTS));
    const onnx = await Promise.all(stages.map((s) => OnnxRuntime.create(s, OPTS)));
    const a = await generate(wgsl);
    const b = await generate(onnx);
    expect(b).toEqual(a);
    expect(new Set(a).size, 'the weights must give a varied sequence').toBeGreaterThanOrEqual(3);
    for (const r of [...wgsl, ...onnx]) r.destroy();
    for (const s of stages) s.destroy();
  });

  it("logits of every new row with { logits: 'all' } (scoring), on a new and on an open session", async () => {
    const gpu = await testGpu();
    const stages = buildStages(gpu, 2);
    const results: Comparison[] = [];
    const runtimes: StageRuntime[][] = [
      stages.map((s) => new WgslRuntime(s, OPTS)),
      await Promise.all(stages.map((s) => OnnxRuntime.create(s, OPTS))),
    ];
    const logits: Float32Array[][] = [];
    for (const [first, last] of runtimes) {
      const got: Float32Array[] = [];
      for (const [ids, create] of [
        [PROMPT, true],
        [[4, 8], false],
      ] as const) {
        const y = await first.step('score', Int32Array.from(ids), create);
        const r = await last.step('score', y.output!, create, { logits: 'all' });
        expect(r.logits!.length).toBe(ids.length * CFG.vocab);
        got.push(r.logits!);
      }
      await expect(last.step('nope', new Float32Array(CFG.dModel), false, { logits: 'all' })).rejects.toThrow(
        UnknownSessionError,
      );
      logits.push(got);
    }
    for (let k = 0; k < 2; k++) results.push(compare(`all-row logits, step ${k}`, logits[1][k], logits[0][k], TOL));
    expectAllPass(results);
    for (const r of runtimes.flat()) r.destroy();
    for (const s of stages) s.destroy();
  });

  it('stages without blocks: embedding only, head only', async () => {
    const gpu = await testGpu();
    for (const layout of [
      [0, 4],
      [4, 0],
    ]) {
      const stages = splitStages(CFG, 2, layout).map((spec) => Stage.create(gpu, CFG, spec, modelWeights(CFG)));
      const wgsl = stages.map((s) => new WgslRuntime(s, OPTS));
      const onnx = await Promise.all(stages.map((s) => OnnxRuntime.create(s, OPTS)));
      const steps = [Int32Array.from(PROMPT), Int32Array.of(3), Int32Array.of(9)];
      const a = await runChain(wgsl, 's', steps, [true, false, false]);
      const b = await runChain(onnx, 's', steps, [true, false, false]);
      expectAllPass(
        steps.map((_, k) => compare(`layout [${layout}] step ${k} logits`, b[1][k].logits!, a[1][k].logits!, TOL)),
      );
      expect(b[1][2].length).toBe(PROMPT.length + 2);
      for (const r of [...wgsl, ...onnx]) r.destroy();
      for (const s of stages) s.destroy();
    }
  });
});

describe('OnnxRuntime sessions', () => {
  it('re-exports after a weight change: a new session sees the new weights, an open one keeps the old', async () => {
    const gpu = await testGpu();
    const [spec] = splitStages(CFG, 2);
    const stage = Stage.create(gpu, CFG, spec, modelWeights(CFG));
    const onnx = await OnnxRuntime.create(stage, OPTS);
    const before = await OnnxRuntime.create(stage, OPTS); // a reference that keeps the old weights throughout
    const prompt = Int32Array.from(PROMPT);
    await onnx.step('old', prompt, true);
    const oldPrefill = await before.step('old', prompt, true);
    // A training step: new weights on the stage (as applyStep leaves them), step counter advanced.
    const w = (await gpu.read(stage.slots.get('h.0.mlp.fc.w')!.param)) as Float32Array;
    gpu.write(
      stage.slots.get('h.0.mlp.fc.w')!.param,
      w.map((v) => v * 1.5 + 0.01),
    );
    stage.step++;
    // The open session continues on the old weights: same as the reference that never re-exported.
    const oldNext = await onnx.step('old', Int32Array.of(7), false);
    const refNext = await before.step('old', Int32Array.of(7), false);
    expect(Array.from(oldNext.output!)).toEqual(Array.from(refNext.output!));
    expect(onnx.exports).toBe(1);
    // A new session gets a fresh export, agreeing with WGSL on the live (new) weights and not with the old.
    const fresh = await onnx.step('new', prompt, true);
    expect(onnx.exports).toBe(2);
    expect([onnx.sessionWeightsStep('old'), onnx.sessionWeightsStep('new'), onnx.weightsStep]).toEqual([0, 1, 1]);
    const wgsl = new WgslRuntime(stage, OPTS);
    const live = await wgsl.step('new', prompt, true);
    expectAllPass([compare('new session vs WGSL on the new weights', fresh.output!, live.output!, TOL)]);
    expect(compare('new session vs the old weights', fresh.output!, oldPrefill.output!, TOL).pass).toBe(false);
    // The old session still decodes on its export; ending it frees that export (nothing left to check but that it
    // works).
    expect((await onnx.step('old', Int32Array.of(8), false)).length).toBe(PROMPT.length + 2);
    expect(onnx.end('old')).toBe(true);
    expect(onnx.has('old')).toBe(false);
    for (const r of [onnx, before, wgsl]) r.destroy();
    stage.destroy();
  });

  it('bounded: least recently used and idle sessions are evicted, over-long sessions refused', async () => {
    const gpu = await testGpu();
    const [spec] = splitStages(CFG, 2);
    const stage = Stage.create(gpu, CFG, spec, modelWeights(CFG));
    let now = 0;
    const evicted: string[] = [];
    const onnx = await OnnxRuntime.create(stage, {
      maxSessions: 2,
      idleTimeoutMs: 1000,
      maxTokensPerSession: 10,
      now: () => now,
      onEvict: (s, why) => evicted.push(`${s}:${why}`),
    });
    await onnx.step('a', Int32Array.of(1, 2), true);
    now = 10;
    await onnx.step('b', Int32Array.of(3), true);
    now = 20;
    await onnx.step('c', Int32Array.of(4), true); // a is the least recently used
    expect(evicted).toEqual(['a:lru']);
    expect([onnx.has('a'), onnx.has('b'), onnx.has('c')]).toEqual([false, true, true]);
    await expect(onnx.step('a', Int32Array.of(5), false)).rejects.toThrow(UnknownSessionError);
    // stage 0 holds 2 layers
    expect(onnx.stats()).toMatchObject({ sessions: 2, tokens: 2, bytes: 2 * 2 * 2 * CFG.dModel * 4, evictions: 1 });
    now = 1015; // b idle 1005 ms, c 995 ms
    await onnx.step('d', Int32Array.of(6), true);
    expect(evicted).toEqual(['a:lru', 'b:idle']);
    await expect(onnx.step('c', new Int32Array(10), false)).rejects.toThrow(ContextLengthError);
    expect((await onnx.step('c', Int32Array.of(1), false)).length).toBe(2); // the refused step changed nothing
    onnx.destroy();
    stage.destroy();
  });
});

describe('measureRuntimes', () => {
  it('gives finite figures for both runtimes and chooses the one that took least', async () => {
    const gpu = await testGpu();
    const [, spec] = splitStages(CFG, 2);
    const stage = Stage.create(gpu, CFG, spec, modelWeights(CFG));
    const m = await measureRuntimes(stage, { promptTokens: 8, decodeTokens: 4 });
    expect(m.results.map((r) => r.name)).toEqual(['wgsl', 'onnx-wasm']);
    for (const r of m.results) {
      for (const v of [r.ttftMs, r.tokensPerSecond, r.totalMs]) expect(Number.isFinite(v) && v > 0).toBe(true);
    }
    expect(m.chosen).toBe(m.results.reduce((a, b) => (b.totalMs < a.totalMs ? b : a)).name);
    // The outputs on the same inputs are compared too: ORT agrees with WGSL to float32 noise.
    expect(m.results[0].relativeError).toBe(0);
    expect(m.results[1].relativeError).toBeLessThan(1e-5);

    // A runtime made slow on purpose (the real WGSL one, delayed 30 ms a step) loses to the real ONNX one.
    const onnx = await OnnxRuntime.create(stage, OPTS);
    const wgsl = new WgslRuntime(stage, OPTS);
    const slow: StageRuntime = {
      name: 'wgsl',
      has: (s) => wgsl.has(s),
      end: (s) => wgsl.end(s),
      destroy: () => wgsl.destroy(),
      step: async (s, x, c) => {
        await new Promise((r) => setTimeout(r, 30));
        return wgsl.step(s, x, c);
      },
    };
    const forced = await measureRuntimes(stage, { promptTokens: 4, decodeTokens: 2, runtimes: [slow, onnx] });
    expect(forced.chosen).toBe('onnx-wasm');
    expect(forced.results[0].totalMs).toBeGreaterThan(3 * 30);
    expect(onnx.has('measure-onnx-wasm-1')).toBe(false); // measurement sessions are ended

    // A runtime that computes something else (logits off by 0.1) is seen to disagree.
    const wrong: StageRuntime = {
      name: 'onnx-wasm',
      has: (s) => onnx.has(s),
      end: (s) => onnx.end(s),
      destroy: () => {},
      step: async (s, x, c) => {
        const r = await onnx.step(s, x, c);
        return { ...r, logits: r.logits!.map((v) => v + 0.1) };
      },
    };
    const off = await measureRuntimes(stage, { promptTokens: 4, decodeTokens: 2, runtimes: [wgsl, wrong] });
    expect(off.results[1].relativeError).toBeGreaterThan(RUNTIME_AGREEMENT);

    // Training steps landing during every try (stage.step moves): outputs of different weights are not compared.
    const training: StageRuntime = { ...slow, step: (s, x, c) => ((stage.step += 1), wgsl.step(s, x, c)) };
    const moving = await measureRuntimes(stage, { promptTokens: 4, decodeTokens: 2, runtimes: [training, onnx] });
    expect(moving.results.map((r) => r.relativeError)).toEqual([undefined, undefined]);
    expect(moving.results.every((r) => r.totalMs > 0)).toBe(true);
    onnx.destroy();
    wgsl.destroy();
    stage.destroy();
  });
});

describe('chooseRuntime', () => {
  it(
    "serves with the mode's runtime, or with 'auto' the faster one, counting ORT's export while the stage " + 'trains',
    async () => {
      const gpu = await testGpu();
      const [, spec] = splitStages(CFG, 2);
      const stage = Stage.create(gpu, CFG, spec, modelWeights(CFG));
      const fixed = await Promise.all((['wgsl', 'onnx'] as const).map((mode) => chooseRuntime(stage, mode, OPTS)));
      expect(fixed.map((c) => [c.runtime.name, c.reason])).toEqual([
        ['wgsl', 'set to wgsl'],
        ['onnx-wasm', 'set to onnx'],
      ]);
      for (const c of fixed) c.runtime.destroy();

      const idle = await chooseRuntime(stage, 'auto', { ...OPTS, measure: { promptTokens: 8, decodeTokens: 4 } });
      expect(idle.training).toBe(false);
      expect(idle.exportMs).toBeGreaterThan(0);
      const rate = String.raw`TTFT [\d.]+ ms, \d+ tokens\/s`;
      const measured = `^measured: wgsl ${rate}; onnx-wasm ${rate}`;
      expect(idle.reason).toMatch(new RegExp(String.raw`${measured}, relative error [\d.]+e-\d+; ORT export \d+ ms$`));
      const [w, o] = idle.measured!;
      expect(idle.runtime.name).toBe(o.totalMs < w.totalMs ? 'onnx-wasm' : 'wgsl');
      idle.runtime.destroy();

      // Training steps land while it chooses: ORT's export is counted against it.
      // (A step lands after each WGSL step of the measurement, not during the export: deterministic under load.)
      const wgslStep = WgslRuntime.prototype.step;
      WgslRuntime.prototype.step = async function (this: WgslRuntime, ...args: Parameters<WgslRuntime['step']>) {
        const r = await wgslStep.apply(this, args);
        stage.step++;
        return r;
      };
      let busy: Awaited<ReturnType<typeof chooseRuntime>>;
      try {
        busy = await chooseRuntime(stage, 'auto', { ...OPTS, measure: { promptTokens: 8, decodeTokens: 4 } });
      } finally {
        WgslRuntime.prototype.step = wgslStep;
      }
      expect(busy.training, busy.reason).toBe(true);
      expect(busy.reason).toContain('counted per generation: the stage is training');
      const [bw, bo] = busy.measured!;
      expect(busy.runtime.name).toBe(bo.totalMs + busy.exportMs! < bw.totalMs ? 'onnx-wasm' : 'wgsl');
      busy.runtime.destroy();
      stage.destroy();
    },
  );
});

describe('stage runtimes refuse bad input with a reason, and keep working', () => {
  it('wrong kinds and shapes, out-of-range ids, NaN activations, unknown sessions', async () => {
    const gpu = await testGpu();
    const stages = buildStages(gpu, 2);
    const makers: Array<(s: Stage) => Promise<StageRuntime>> = [
      (s) => Promise.resolve(new WgslRuntime(s, OPTS)),
      (s) => OnnxRuntime.create(s, OPTS),
    ];
    for (const make of makers) {
      const [first, last] = await Promise.all(stages.map(make));
      await expect(first.step('x', new Float32Array(CFG.dModel), true)).rejects.toThrow(/stage 0 takes token ids/);
      await expect(first.step('x', Int32Array.of(1, CFG.vocab), true)).rejects.toThrow(
        /token id 48 at position 1 is outside \[0, 48\)/,
      );
      await expect(first.step('x', new Int32Array(0), true)).rejects.toThrow(/no token ids/);
      await expect(last.step('x', Int32Array.of(1), true)).rejects.toThrow(/takes activations/);
      await expect(last.step('x', new Float32Array(CFG.dModel + 1), true)).rejects.toThrow(
        /33 activations are not t rows of 32/,
      );
      const nan = new Float32Array(2 * CFG.dModel);
      nan[40] = NaN;
      await expect(last.step('x', nan, true)).rejects.toThrow(/activation 40 is NaN: refused/);
      await expect(last.step('never-opened', new Float32Array(CFG.dModel), false)).rejects.toThrow(UnknownSessionError);
      await expect(first.step('long', new Int32Array(CFG.context + 1), true)).rejects.toThrow(ContextLengthError);
      // Nothing was opened by the refused steps, and a good one still runs.
      expect(['x', 'never-opened', 'long'].some((s) => first.has(s) || last.has(s))).toBe(false);
      const ok = await first.step('x', Int32Array.of(1, 2), true);
      expect(ok.output!.length).toBe(2 * CFG.dModel);
      first.destroy();
      last.destroy();
    }
    for (const s of stages) s.destroy();
  });

  it('export refuses weights of the wrong size', () => {
    const [spec] = splitStages(CFG, 2);
    const w = modelWeights(CFG);
    w.set('wpe', new Float32Array(3));
    expect(() => stageCachedOnnxModel(CFG, spec, w)).toThrow(/weight wpe has 3 values for shape \[32,32\]/);
  });
});
