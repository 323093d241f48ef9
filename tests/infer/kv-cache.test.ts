import { describe, expect, it } from 'vitest';
import { ArgumentError, ShapeError, TokenRangeError } from '../../src/gpu/index.ts';
import { ContextLengthError, KvCache, SessionLimitError, UnknownSessionError } from '../../src/infer/kv-cache.ts';
import { StageInference, type StageInferenceOptions, type StageStepResult } from '../../src/infer/stage-infer.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { testGpu } from '../gpu-fixture.ts';
import { buildStages, modelWeights } from './fixtures.ts';

const CFG: ModelConfig = { vocab: 16, dModel: 16, heads: 2, layers: 2, context: 16, seed: 1 };

/** A one-stage model (embeddings, 2 blocks, head) behind a StageInference with a hand-driven clock. */
async function setup(opts: Partial<StageInferenceOptions> = {}) {
  const gpu = await testGpu();
  const [stage] = buildStages(gpu, 1, CFG, modelWeights(CFG));
  const clock = { now: 0 };
  const evicted: string[] = [];
  const inf = new StageInference(stage, {
    maxSessions: 2,
    now: () => clock.now,
    onEvict: (id, why) => evicted.push(`${id}:${why}`),
    ...opts,
  });
  const run = (f: () => StageStepResult) => gpu.release(f().logits);
  const done = () => {
    inf.destroy();
    stage.destroy();
  };
  return { gpu, stage, inf, clock, evicted, run, done };
}

describe('KV cache limits and eviction', () => {
  it('evicts the least recently used session when a new one needs the slot', async () => {
    const { inf, evicted, run, done } = await setup();
    run(() => inf.prefill('a', [1, 2]));
    run(() => inf.prefill('b', [3]));
    run(() => inf.prefill('c', [4]));
    expect(evicted).toEqual(['a:lru']);
    expect(() => inf.decode('a', [5])).toThrow(UnknownSessionError);
    expect(() => inf.decode('a', [5])).toThrow(/evicted/);
    run(() => inf.decode('b', [5])); // b is now more recent than c
    run(() => inf.prefill('d', [6]));
    expect(evicted).toEqual(['a:lru', 'c:lru']);
    expect(inf.cache.ids()).toEqual(['b', 'd']);
    expect(inf.stats()).toMatchObject({ sessions: 2, tokens: 3, evictions: 2 });
    done();
  });

  it('refuses a new session while every slot was used too recently to evict, and nothing changes', async () => {
    const { inf, clock, evicted, run, done } = await setup({ evictableAfterMs: 1000 });
    run(() => inf.prefill('a', [1]));
    run(() => inf.prefill('b', [2]));
    clock.now = 500;
    expect(() => inf.prefill('c', [3])).toThrow(SessionLimitError);
    expect(inf.cache.ids()).toEqual(['a', 'b']);
    clock.now = 1100;
    run(() => inf.decode('a', [4])); // a is active again; b has idled 1100 ms
    run(() => inf.prefill('c', [3]));
    expect(evicted).toEqual(['b:lru']);
    expect(inf.cache.ids()).toEqual(['a', 'c']);
    done();
  });

  it('drops sessions idle longer than idleTimeoutMs', async () => {
    const { inf, clock, evicted, run, done } = await setup({ maxSessions: 4, idleTimeoutMs: 60_000 });
    run(() => inf.prefill('a', [1]));
    clock.now = 30_000;
    run(() => inf.prefill('b', [1]));
    clock.now = 70_000;
    run(() => inf.prefill('c', [1])); // every open sweeps: a is 70 s idle
    expect(evicted).toEqual(['a:idle']);
    clock.now = 95_000;
    expect(inf.cache.sweep()).toEqual(['b']);
    expect(inf.cache.ids()).toEqual(['c']);
    done();
  });

  it(
    'refuses prompts and generations past the context or the per-session limit, leaving the session ' + 'intact',
    async () => {
      const { inf, run, done, stage } = await setup({ maxTokensPerSession: 10 });
      expect(() => inf.prefill('a', Array(11).fill(1))).toThrow(ContextLengthError);
      expect(inf.cache.has('a')).toBe(false);
      run(() => inf.prefill('a', Array(8).fill(1)));
      expect(() => inf.decode('a', [1, 2, 3])).toThrow(/8 cached \+ 3 new positions exceed the 10/);
      expect(inf.session('a')!.length).toBe(8);
      run(() => inf.decode('a', [1]));
      run(() => inf.decode('a', [2]));
      expect(() => inf.decode('a', [3])).toThrow(ContextLengthError);
      expect(inf.session('a')).toMatchObject({ length: 10, weightsStep: 0 });
      // By default a session may hold the model's context, and no more.
      const full = new StageInference(stage, { maxSessions: 1 });
      expect(() => full.prefill('x', Array(CFG.context + 1).fill(0))).toThrow(/exceed the 16 a session may hold/);
      run(() => full.prefill('x', Array(CFG.context).fill(0)));
      expect(() => new StageInference(stage, { maxSessions: 1, maxTokensPerSession: CFG.context + 1 })).toThrow(
        ArgumentError,
      );
      full.destroy();
      done();
    },
  );

  it('bounds memory, grows by doubling and frees everything it held', async () => {
    const { gpu, stage, inf, run } = await setup({ maxSessions: 3, maxTokensPerSession: 12, initialTokens: 2 });
    const before = gpu.pool.stats.liveBytes;
    expect(inf.cache.bytesPerToken).toBe(2 * 2 * 16 * 4); // layers · (k, v) · C · float32
    run(() => inf.prefill('a', [1, 2, 3]));
    expect(inf.session('a')!.capacity).toBe(4);
    for (let i = 0; i < 6; i++) run(() => inf.decode('a', [i]));
    expect(inf.session('a')!.capacity).toBe(12); // 4 → 8 → 16, capped at 12
    for (const s of ['b', 'c', 'd', 'e']) run(() => inf.prefill(s, Array(12).fill(2)));
    const st = inf.stats();
    expect(st.sessions).toBe(3);
    expect(st.bytes).toBeLessThanOrEqual(st.maxBytes);
    expect(st.maxBytes).toBe(3 * 12 * inf.cache.bytesPerToken);
    inf.end('c');
    expect(inf.end('c')).toBe(false);
    inf.destroy();
    await gpu.sync(); // the pending dispatches' uniforms go back too
    expect(gpu.pool.stats.liveBytes).toBe(before);
    stage.destroy();
  });

  it('rejects malformed input with typed errors, creating no session and leaking no tensor', async () => {
    const { gpu, stage, inf, done } = await setup();
    const before = gpu.pool.stats.liveBytes;
    expect(() => inf.prefill('a', [1, CFG.vocab])).toThrow(TokenRangeError);
    expect(() => inf.prefill('a', [1.5])).toThrow(TokenRangeError);
    expect(() => inf.prefill('a', [])).toThrow(ShapeError);
    expect(() => inf.prefill('a', gpu.zeros([2, CFG.dModel]))).toThrow(/token ids/);
    expect(() => inf.decode('nobody', [1])).toThrow(UnknownSessionError);
    expect(inf.cache.ids()).toEqual([]);
    expect(gpu.pool.stats.liveBytes).toBe(before); // the refused tensor was released
    // A later stage takes activations only, of width dModel.
    const [, s1] = buildStages(gpu, 2, CFG, modelWeights(CFG));
    const later = new StageInference(s1, { maxSessions: 1 });
    expect(() => later.prefill('a', [1, 2])).toThrow(ShapeError);
    expect(() => later.prefill('a', gpu.zeros([2, CFG.dModel + 1]))).toThrow(ShapeError);
    expect(() => later.prefill('a', new Float32Array(CFG.dModel + 3))).toThrow(ShapeError);
    const r = later.prefill('a', new Float32Array(2 * CFG.dModel));
    expect(r.logits!.shape).toEqual([2, CFG.vocab]);
    gpu.release(r.logits);
    later.destroy();
    s1.destroy();
    expect(() => new KvCache(gpu, { layers: 1, channels: 8 }, { maxSessions: 0, maxTokensPerSession: 4 })).toThrow(
      ArgumentError,
    );
    void stage;
    done();
  });

  it("uses the stage's live weights and holds no copy of them", async () => {
    const { gpu, stage, inf, done } = await setup();
    const before = gpu.pool.stats.liveBytes;
    const other = new StageInference(stage, { maxSessions: 8 });
    expect(gpu.pool.stats.liveBytes).toBe(before); // constructing one allocates nothing
    other.destroy();
    const a = inf.prefill('a', [1, 2, 3], { logits: 'last' });
    expect(a.logits!.shape).toEqual([1, CFG.vocab]);
    const la = await gpu.readF32(a.logits!);
    gpu.release(a.logits);
    inf.end('a');
    expect(gpu.pool.stats.liveBytes).toBe(before); // nothing kept once the session ends
    // An update of the stage's weights (as training makes) shows in the next request.
    const head = stage.slots.get('head.w')!.param;
    const w = await gpu.readF32(head);
    gpu.write(
      head,
      w.map((v) => 2 * v),
    );
    const b = inf.prefill('b', [1, 2, 3], { logits: 'last' });
    const lb = await gpu.readF32(b.logits!);
    gpu.release(b.logits);
    for (let i = 0; i < CFG.vocab; i++) expect(lb[i]).toBeCloseTo(2 * la[i], 4);
    done();
  });
});
