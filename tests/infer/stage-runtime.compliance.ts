/**
 * The contract every StageRuntime (src/infer/stage-runtime.ts) keeps, written once and run against each
 * implementation (stage-runtime-wgsl.test.ts, stage-runtime-onnx.test.ts), as libp2p's interface-compliance
 * suites are: a server may swap one runtime for another only if both pass. Each check compares with an
 * independent answer (the uncached one-shot Stage.forward of the whole sequence) or a typed error, so a
 * runtime that ignored its cache, mixed sessions up, or accepted bad input would fail it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, ShapeError, TokenRangeError, type Gpu } from '../../src/gpu/index.ts';
import { ContextLengthError, SessionLimitError, UnknownSessionError } from '../../src/infer/kv-cache.ts';
import type { StageRuntime, StageRuntimeOptions, StepOptions } from '../../src/infer/stage-runtime.ts';
import type { Stage } from '../../src/model/stage.ts';
import { compare, type Comparison } from '../../src/ops/compare.ts';
import { Rng } from '../../src/ops/rng.ts';
import { expectAllPass, testGpu } from '../gpu-fixture.ts';
import { buildStages, CFG } from './fixtures.ts';

/**
 * Cached steps and the one-shot forward run the same float32 math in different orders (attention over a
 * cache, 1-row matmuls; ORT's wasm kernels for ONNX): outputs of magnitude ~1 agree to ~1e-6, and this
 * leaves two orders of magnitude. Wrong positions or a lost cache move outputs by O(0.1–1) (checked below).
 */
export const COMPLIANCE_TOL = { atol: 1e-4, rtol: 1e-3 };

export type RuntimeFactory = (stage: Stage, opts: StageRuntimeOptions) => Promise<StageRuntime>;

/** Bytes of KV cache `rt` holds now: what end() and destroy() must give back. */
export type HeldBytes = (rt: StageRuntime, stage: Stage) => number;

const PROMPT = [5, 17, 3, 44, 9, 30, 2];
const DECODE = [11, 12, 40, 0];
let nextMb = 2_000_000;

/** Input rows [0, n) of a stage: token ids at stage 0, seeded activations after. */
function inputsOf(stage: Stage, n: number, seed = 1): Int32Array | Float32Array {
  if (stage.spec.hasEmbedding) return Int32Array.from([...PROMPT, ...DECODE, ...PROMPT].slice(0, n));
  const rng = new Rng(seed + stage.spec.index);
  return Float32Array.from({ length: n * CFG.dModel }, () => rng.normal());
}

/** Rows [a, b) of a stage input. */
function rows(x: Int32Array | Float32Array, a: number, b: number): Int32Array | Float32Array {
  const w = x instanceof Int32Array ? 1 : CFG.dModel;
  return x.slice(a * w, b * w);
}

/** The stage's output for every row of `input` by one uncached Stage.forward: activations or logits. */
async function oneShot(stage: Stage, input: Int32Array | Float32Array): Promise<Float32Array> {
  const { gpu, spec } = stage;
  const L = input instanceof Int32Array ? input.length : input.length / CFG.dModel;
  const id = nextMb++;
  const r = stage.forward({
    id,
    batch: 1,
    seq: L,
    ids: input instanceof Int32Array ? input : undefined,
    input: input instanceof Float32Array ? gpu.upload(input, [L, CFG.dModel]) : undefined,
    targets: spec.hasHead ? new Int32Array(L) : undefined,
  });
  const t = (r.output ?? r.logits)!;
  const out = (await gpu.read(t)) as Float32Array;
  gpu.release(t, r.loss);
  stage.discard(id);
  return out;
}

/** What a step over rows [start, end) must return: every row's output, or the last row's logits. */
function expected(stage: Stage, full: Float32Array, start: number, end: number, opts: StepOptions = {}): Float32Array {
  const w = stage.spec.hasHead ? CFG.vocab : CFG.dModel;
  const first = stage.spec.hasHead && opts.logits !== 'all' ? end - 1 : start;
  return full.slice(first * w, end * w);
}

function outOf(r: { output?: Float32Array; logits?: Float32Array }): Float32Array {
  return (r.output ?? r.logits)!;
}

export function stageRuntimeCompliance(name: string, create: RuntimeFactory, heldBytes: HeldBytes): void {
  describe(`StageRuntime compliance: ${name}`, () => {
    let gpu: Gpu;
    let stages: Stage[];
    const open: StageRuntime[] = [];
    const make = async (stage: Stage, opts: StageRuntimeOptions = { maxSessions: 4 }) => {
      const rt = await create(stage, opts);
      open.push(rt);
      return rt;
    };

    beforeAll(async () => {
      gpu = await testGpu();
      stages = buildStages(gpu, 3); // embedding + blocks | blocks | blocks + head: every kind of stage
    });
    afterAll(() => {
      for (const rt of open) rt.destroy();
      for (const s of stages ?? []) s.destroy();
    });

    it('prefill in chunks, then decode steps, equal the one-shot forward of the whole sequence', async () => {
      const results: Comparison[] = [];
      for (const stage of stages) {
        const rt = await make(stage);
        const n = PROMPT.length + DECODE.length;
        const x = inputsOf(stage, n);
        const full = await oneShot(stage, x);
        // Chunks [0,4) and [4,7) (the second continues the session), then one position at a time.
        const cuts = [0, 4, PROMPT.length, ...DECODE.map((_, k) => PROMPT.length + k + 1)];
        for (let k = 1; k < cuts.length; k++) {
          const [a, b] = [cuts[k - 1], cuts[k]];
          const r = await rt.step('s', rows(x, a, b), b <= PROMPT.length);
          expect([r.start, r.length], `stage ${stage.spec.index} step ${k}`).toEqual([a, b]);
          const got = outOf(r);
          results.push(
            compare(`stage ${stage.spec.index} rows [${a},${b})`, got, expected(stage, full, a, b), COMPLIANCE_TOL),
          );
          if (b - a === 1 && a > 0) {
            // Teeth: the row alone (no cache, position 0) gives something else, so a lost cache would fail.
            const alone = await oneShot(stage, rows(x, a, b));
            const w = stage.spec.hasHead ? CFG.vocab : CFG.dModel;
            expect(compare('row without its context', got, alone.slice(0, w), COMPLIANCE_TOL).pass).toBe(false);
          }
        }
        expect(rt.has('s')).toBe(true);
      }
      expectAllPass(results);
    });

    it("the last stage gives every new row's logits with { logits: 'all' }, new and open sessions alike", async () => {
      const stage = stages.at(-1)!;
      const rt = await make(stage);
      const x = inputsOf(stage, 9, 7);
      const full = await oneShot(stage, x);
      const all = { logits: 'all' } as const;
      const first = await rt.step('all', rows(x, 0, 7), true, all);
      const next = await rt.step('all', rows(x, 7, 9), false, all);
      expect(first.logits!.length).toBe(7 * CFG.vocab);
      expect(next.logits!.length).toBe(2 * CFG.vocab);
      expectAllPass([
        compare('all logits, prefill', first.logits!, expected(stage, full, 0, 7, all), COMPLIANCE_TOL),
        compare('all logits, continued', next.logits!, expected(stage, full, 7, 9, all), COMPLIANCE_TOL),
      ]);
    });

    it('sessions are independent: interleaved, and one ended, the others go on unchanged', async () => {
      const stage = stages[0];
      const rt = await make(stage);
      const a = Int32Array.from([...PROMPT, 7, 8]);
      const b = Int32Array.from([30, 1, 2, 7, 8]); // the same two last tokens after another prompt
      const [fa, fb] = [await oneShot(stage, a), await oneShot(stage, b)];
      const results: Comparison[] = [];
      const check = async (s: string, x: Int32Array, full: Float32Array, i: number, j: number, create: boolean) => {
        const r = await rt.step(s, x.slice(i, j), create);
        results.push(compare(`session ${s} rows [${i},${j})`, r.output!, expected(stage, full, i, j), COMPLIANCE_TOL));
        return r.output!;
      };
      await check('a', a, fa, 0, 7, true);
      await check('b', b, fb, 0, 3, true);
      const a7 = await check('a', a, fa, 7, 8, false);
      const b7 = await check('b', b, fb, 3, 4, false);
      // Same token, different context: a runtime that shared one cache could not give both right.
      expect(compare('a and b on the same token', a7, b7, COMPLIANCE_TOL).pass).toBe(false);
      expect(rt.end('b')).toBe(true);
      await check('a', a, fa, 8, 9, false);
      expect([rt.has('a'), rt.has('b')]).toEqual([true, false]);
      await expect(rt.step('b', b.slice(4, 5), false)).rejects.toThrow(UnknownSessionError);
      // The same id opened again is a new session: it starts at position 0.
      expect((await rt.step('b', b.slice(0, 2), true)).start).toBe(0);
      expectAllPass(results);
    });

    it('KV cache limits and unknown sessions give the typed errors, and a refused step changes nothing', async () => {
      const stage = stages[0];
      const evicted: string[] = [];
      const rt = await make(stage, {
        maxSessions: 2,
        maxTokensPerSession: 8,
        onEvict: (s, why) => evicted.push(`${s}:${why}`),
      });
      const x = Int32Array.from([...PROMPT, ...DECODE]);
      const full = await oneShot(stage, x.slice(0, 8));
      await expect(rt.step('ghost', x.slice(0, 1), false)).rejects.toThrow(UnknownSessionError);
      await expect(rt.step('long', x.slice(0, 9), true)).rejects.toThrow(ContextLengthError);
      expect(rt.has('ghost') || rt.has('long')).toBe(false);
      expect((await rt.step('a', x.slice(0, 6), true)).length).toBe(6);
      await expect(rt.step('a', x.slice(6, 9), false)).rejects.toThrow(ContextLengthError);
      const r = await rt.step('a', x.slice(6, 8), false); // fits exactly: the refused step left position 6
      expect([r.start, r.length]).toEqual([6, 8]);
      expectAllPass([compare('after a refused step', r.output!, expected(stage, full, 6, 8), COMPLIANCE_TOL)]);
      await expect(rt.step('a', x.slice(8, 9), false)).rejects.toThrow(ContextLengthError);
      // Two slots: a third session evicts the least recently used.
      await rt.step('b', x.slice(0, 1), true);
      await rt.step('c', x.slice(0, 1), true);
      expect(evicted).toEqual(['a:lru']);
      expect([rt.has('a'), rt.has('b'), rt.has('c')]).toEqual([false, true, true]);
      await expect(rt.step('a', x.slice(8, 9), false)).rejects.toThrow(UnknownSessionError);
      // No session evictable yet: the new one is refused, the held one kept.
      const busy = await make(stage, { maxSessions: 1, evictableAfterMs: 60_000, now: () => 0 });
      await busy.step('x', x.slice(0, 2), true);
      await expect(busy.step('y', x.slice(0, 2), true)).rejects.toThrow(SessionLimitError);
      expect([busy.has('x'), busy.has('y')]).toEqual([true, false]);
      // A session may not be longer than the model's context.
      await expect(create(stage, { maxSessions: 1, maxTokensPerSession: CFG.context + 1 })).rejects.toThrow(
        ArgumentError,
      );
    });

    it('bad input is refused with a typed error before anything runs, and the runtime keeps working', async () => {
      const [first, middle, last] = await Promise.all(stages.map((s) => make(s)));
      const d = CFG.dModel;
      await expect(first.step('x', new Float32Array(d), true)).rejects.toThrow(ShapeError);
      await expect(first.step('x', Int32Array.of(1, CFG.vocab), true)).rejects.toThrow(TokenRangeError);
      await expect(first.step('x', Int32Array.of(-1), true)).rejects.toThrow(TokenRangeError);
      await expect(first.step('x', new Int32Array(0), true)).rejects.toThrow(ShapeError);
      for (const rt of [middle, last]) {
        await expect(rt.step('x', Int32Array.of(1), true)).rejects.toThrow(ShapeError);
        await expect(rt.step('x', new Float32Array(d + 1), true)).rejects.toThrow(ShapeError);
        await expect(rt.step('x', new Float32Array(0), true)).rejects.toThrow(ShapeError);
        const bad = new Float32Array(2 * d);
        bad[d + 3] = Number.POSITIVE_INFINITY;
        await expect(rt.step('x', bad, true)).rejects.toThrow(ShapeError);
      }
      expect([first, middle, last].some((rt) => rt.has('x'))).toBe(false);
      // An open session refuses a bad step and continues as if it had not been sent.
      const x = inputsOf(stages[1], 3);
      const full = await oneShot(stages[1], x);
      await middle.step('y', rows(x, 0, 2), true);
      await expect(middle.step('y', new Float32Array(d - 1), false)).rejects.toThrow(ShapeError);
      const r = await middle.step('y', rows(x, 2, 3), false);
      expect([r.start, r.length]).toEqual([2, 3]);
      expectAllPass([compare('after a refused step', r.output!, expected(stages[1], full, 2, 3), COMPLIANCE_TOL)]);
    });

    it('end() and destroy() free what sessions held', async () => {
      const stage = stages[1];
      const rt = await make(stage);
      const base = heldBytes(rt, stage);
      const x = inputsOf(stage, 6);
      await rt.step('a', rows(x, 0, 6), true);
      const one = heldBytes(rt, stage);
      expect(one).toBeGreaterThan(base);
      await rt.step('b', rows(x, 0, 6), true);
      expect(heldBytes(rt, stage)).toBeGreaterThan(one);
      expect(rt.end('b')).toBe(true);
      expect(rt.end('b')).toBe(false);
      expect(heldBytes(rt, stage)).toBe(one);
      await expect(rt.step('b', rows(x, 0, 1), false)).rejects.toThrow(UnknownSessionError);
      await rt.step('c', rows(x, 0, 3), true);
      rt.destroy();
      expect([rt.has('a'), rt.has('c')]).toEqual([false, false]);
      expect(heldBytes(rt, stage)).toBe(base);
    });
  });
}
