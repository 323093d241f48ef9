import { afterEach, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { HttpError } from '../../src/coordinator/errors.ts';
import { heldOutBatch, Validation, type EvaluateFn } from '../../src/coordinator/evaluation.ts';
import { Store } from '../../src/coordinator/store.ts';
import { memoryLog, tinyModel } from './fixtures.ts';

/** Little-endian Uint16 bytes of the ids 0, 1, 2, … n−1 (a split whose every window is easy to recognise). */
function countingSplit(n: number): Uint8Array {
  const b = new Uint8Array(n * 2);
  const v = new DataView(b.buffer);
  for (let i = 0; i < n; i++) v.setUint16(i * 2, i, true);
  return b;
}

describe('heldOutBatch', () => {
  it('takes n windows spread evenly over the split, targets one token ahead', () => {
    const { ids, targets } = heldOutBatch(countingSplit(100), 4, 3);
    // Windows start at 0, (100 − 5)/2 = 47 and 95: the last one ends at the split's last token.
    expect([...ids]).toEqual([0, 1, 2, 3, 47, 48, 49, 50, 95, 96, 97, 98]);
    expect([...targets]).toEqual([1, 2, 3, 4, 48, 49, 50, 51, 96, 97, 98, 99]);
    expect(() => heldOutBatch(countingSplit(4), 4, 1)).toThrow(/fewer than one sequence/);
  });
});

describe('Validation (fake evaluate)', () => {
  let store: Store;
  afterEach(() => store?.close());

  function setup(
    opts: {
      evaluate?: EvaluateFn | null;
      valSplit?: (vocab: number) => Promise<Uint8Array>;
      minIntervalMs?: number;
    } = {},
  ) {
    store = Store.open(':memory:');
    const model = tinyModel('m', [2, 2]);
    store.insertModel(model);
    for (const p of ['a', 'b'])
      store.upsertPeer({ peerId: p, kind: 'node', tokensPerSecond: 10, preferModel: null, at: 0 });
    store.replaceAssignments(
      [
        { modelId: 'm', stage: 0, replica: 0, peerId: 'a' },
        { modelId: 'm', stage: 1, replica: 0, peerId: 'b' },
      ],
      0,
    );
    let clock = 0;
    const calls: Array<{ modelId: string; ids: number[]; targets: number[]; signal: AbortSignal }> = [];
    const recorded: Array<[string, number, number]> = [];
    const logs = memoryLog();
    let answer: () => Promise<number> = async () => 2.5;
    const evaluate: EvaluateFn = async (modelId, ids, targets, signal) => {
      calls.push({ modelId, ids: [...ids], targets: [...targets], signal });
      return answer();
    };
    const v = new Validation(
      {
        store,
        evaluate: () => (opts.evaluate === undefined ? evaluate : opts.evaluate),
        valSplit: opts.valSplit ?? (async () => countingSplit(1000)),
        record: (m, s, l) => void recorded.push([m, s, l]),
        now: () => clock,
        log: logs.log,
      },
      { everySteps: 10, minIntervalMs: opts.minIntervalMs ?? 20_000, sequences: 2 },
    );
    return {
      v,
      calls,
      recorded,
      logs,
      model,
      tick: (ms: number) => (clock += ms),
      answerWith: (f: () => Promise<number>) => (answer = f),
    };
  }

  it('evaluates every 10 steps and at most every 20 s, on the same held-out sequences each time', async () => {
    const { v, calls, recorded, tick, model } = setup();
    for (let step = 0; step < 9; step++) v.onTrainStep('m', step);
    await v.idle();
    expect(calls).toEqual([]);
    v.onTrainStep('m', 9);
    await v.idle();
    expect(recorded).toEqual([['m', 9, 2.5]]);
    const ctx = model.spec.model.context;
    expect(calls[0].ids.length).toBe(2 * ctx);
    expect(calls[0].targets).toEqual(calls[0].ids.map((x) => x + 1));
    // Ten steps later but only 5 s later: not yet. After 20 s: the next due step runs, on the same sequences.
    tick(5_000);
    v.onTrainStep('m', 19);
    await v.idle();
    expect(calls.length).toBe(1);
    tick(15_000);
    v.onTrainStep('m', 20);
    await v.idle();
    expect(recorded.map((r) => r[1])).toEqual([9, 20]);
    expect(calls[1].ids).toEqual(calls[0].ids);
  });

  it('skips quietly without an evaluate function or with a stage nobody holds', async () => {
    const none = setup({ evaluate: null });
    none.v.onTrainStep('m', 50);
    await none.v.idle();
    expect(none.recorded).toEqual([]);
    store.close();
    const gap = setup();
    store.replaceAssignments([{ modelId: 'm', stage: 0, replica: 0, peerId: 'a' }], 0);
    gap.v.onTrainStep('m', 50);
    await gap.v.idle();
    expect(gap.calls).toEqual([]);
    expect(gap.logs.lines).toEqual([]);
  });

  it('a failing or non-finite evaluation is logged, records nothing, and the next due one runs', async () => {
    const { v, recorded, logs, answerWith, tick } = setup({ minIntervalMs: 0 });
    answerWith(async () => {
      throw new Error('stage 1 holder unreachable');
    });
    v.onTrainStep('m', 9);
    await v.idle();
    answerWith(async () => NaN);
    v.onTrainStep('m', 19);
    await v.idle();
    answerWith(async () => 3.25);
    tick(1);
    v.onTrainStep('m', 29);
    await v.idle();
    expect(recorded).toEqual([['m', 29, 3.25]]);
    const warns = logs.lines.filter((l) => l.level === 'warn').map((l) => l.message);
    expect(warns).toEqual([
      expect.stringMatching(/step 9 failed.*stage 1 holder unreachable/),
      expect.stringMatching(/step 19 failed.*not a finite loss/),
    ]);
  });

  it('a vocabulary with no shipped corpus turns validation off for the model, said once', async () => {
    let reads = 0;
    const { v, calls, logs } = setup({
      minIntervalMs: 0,
      valSplit: async () => {
        reads++;
        throw new HttpError('notFound', 'no Brown tokenizer for vocabulary "32"');
      },
    });
    v.onTrainStep('m', 9);
    await v.idle();
    v.onTrainStep('m', 19);
    await v.idle();
    expect([reads, calls.length]).toEqual([1, 0]);
    expect(logs.lines).toEqual([
      { level: 'info', message: expect.stringMatching(/validation of m is off: no Brown tokenizer/) },
    ]);
  });

  it('stop() aborts the evaluation in flight and nothing is recorded', async () => {
    const { v, calls, recorded, answerWith } = setup();
    answerWith(
      () =>
        new Promise<number>((_, reject) =>
          calls[0].signal.addEventListener('abort', () => reject(calls[0].signal.reason)),
        ),
    );
    v.onTrainStep('m', 9);
    await new Promise((r) => setTimeout(r, 10));
    expect(calls.length).toBe(1);
    v.stop();
    await v.idle();
    expect(calls[0].signal.aborted).toBe(true);
    expect(recorded).toEqual([]);
  });

  it('after a restart, counts from the last validation stored', async () => {
    const { v, calls } = setup();
    store.addMetric({ modelId: 'm', step: 45, kind: 'val', value: 3, at: 0 });
    v.onTrainStep('m', 50);
    await v.idle();
    expect(calls).toEqual([]);
    v.onTrainStep('m', 55);
    await v.idle();
    expect(calls.length).toBe(1);
  });
});

describe('Coordinator validation wiring', () => {
  it('records val metrics from the real held-out split through the evaluate it was given', async () => {
    const seen: Int32Array[] = [];
    const coord = await Coordinator.start({
      dbPath: ':memory:',
      heartbeatMs: 600_000,
      log: memoryLog().log,
      evaluate: async (_m, ids, targets) => {
        seen.push(ids);
        // Targets are the next tokens of the same sequences.
        for (let i = 0; i + 1 < 8; i++) expect(targets[i]).toBe(ids[i + 1]);
        return 4 - seen.length / 10;
      },
      evaluation: { everySteps: 5, minIntervalMs: 0, sequences: 3 },
    });
    try {
      const post = (path: string, body: unknown) =>
        fetch(coord.url + path, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const reg = await (
        await post('/api/models', {
          id: 'v',
          name: 'v',
          config: { vocab: 1024, dModel: 16, heads: 2, layers: 2, context: 8 },
          layout: [2],
          codec: 'none',
          microBatches: 1,
          batch: 1,
          pricePer1kTokens: 0,
        })
      ).json();
      expect(reg.model.id).toBe('v');
      await post('/api/peers/join', { peerId: 'only', kind: 'node', tokensPerSecond: 5 });
      for (let step = 0; step < 10; step++) {
        await post('/api/models/v/metrics', { step, loss: 5, tokens: 8 });
        // The first evaluation encodes the val split (a second or two): wait for it before the next is due.
        if (step === 4) for (let i = 0; i < 200 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      }
      for (let i = 0; i < 200 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
      const metrics = (await (await fetch(`${coord.url}/api/models/v/metrics`)).json()).metrics.filter(
        (m: any) => m.kind === 'val',
      );
      expect(metrics.map((m: any) => [m.step, m.value])).toEqual([
        [4, 3.9],
        [9, 3.8],
      ]);
      expect(seen[0].length).toBe(3 * 8);
      expect(seen[0].every((id) => id >= 0 && id < 1024)).toBe(true);
      expect([...seen[1]]).toEqual([...seen[0]]);
    } finally {
      await coord.stop();
    }
  }, 60_000);
});
