import { describe, expect, it } from 'vitest';
import { ArgumentError } from '../../src/gpu/errors.ts';
import { GpuTurns, TurnAbortedError, type TurnKind } from '../../src/gpu/gpu-turns.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A turn held open until the test lets it go: everything queued behind it waits, so the order is decided by the
 * scheduler alone.
 */
function gate(): { open: () => void; task: () => Promise<void> } {
  let open!: () => void;
  const closed = new Promise<void>((r) => (open = r));
  return { open, task: () => closed };
}

/**
 * Queues `pattern` (t = train, i = infer) behind a held training turn, releases it, returns the order the turns ran in.
 */
async function orderUnder(share: number, pattern: string): Promise<string> {
  const turns = new GpuTurns({ inferenceShare: share });
  const g = gate();
  const blocker = turns.run('train', g.task);
  await sleep(5); // the blocker is running
  let order = '';
  const kinds: Record<string, TurnKind> = { t: 'train', i: 'infer' };
  const all = [...pattern].map((c) =>
    turns.run(kinds[c], async () => {
      order += c;
      await sleep(1);
    }),
  );
  g.open();
  await Promise.all([blocker, ...all]);
  return order;
}

describe('GpuTurns', () => {
  it('runs one turn at a time across both classes', async () => {
    const turns = new GpuTurns();
    let active = 0;
    let peak = 0;
    const task = async () => {
      active++;
      peak = Math.max(peak, active);
      await sleep(2);
      active--;
    };
    await Promise.all(Array.from({ length: 12 }, (_, k) => turns.run(k % 3 ? 'train' : 'infer', task)));
    expect(peak).toBe(1);
    expect(turns.stats.train.turns).toBe(8);
    expect(turns.stats.infer.turns).toBe(4);
  });

  it('share 1: every waiting inference turn goes before any waiting training turn', async () => {
    expect(await orderUnder(1, 'tttiiti')).toBe('iiitttt');
  });

  it('share 0: inference only once no training turn waits', async () => {
    expect(await orderUnder(0, 'iititt')).toBe('tttiii');
  });

  it('share 0.5 alternates while both wait; 0.25 gives inference one turn in four', async () => {
    expect(await orderUnder(0.5, 'ttttiii')).toBe('itititt');
    // While both classes wait inference gets a quarter of the turns, evenly spread (the held turn that
    // started alone counts as training's: 5 of the first 20 turns are inference).
    expect(await orderUnder(0.25, 'tttttttttttttiiiiii')).toBe('ittitttitttitttitti');
  });

  it('a class that was idle gets no burst of saved-up turns when it returns', async () => {
    const turns = new GpuTurns({ inferenceShare: 0.5 });
    // Training alone for 6 turns advances the virtual time; inference then arrives with 4 turns.
    for (let k = 0; k < 6; k++) await turns.run('train', () => sleep(1));
    const g = gate();
    const blocker = turns.run('train', g.task);
    await sleep(5);
    let order = '';
    const all = [...'iiiitttt'].map((c) => turns.run(c === 'i' ? 'infer' : 'train', async () => void (order += c)));
    g.open();
    await Promise.all([blocker, ...all]);
    expect(order).toBe('itititit');
  });

  it('a requester with one request at a time (a decode loop) keeps its share', async () => {
    const turns = new GpuTurns({ inferenceShare: 0.75 });
    let training = true;
    const trainer = async () => {
      while (training) await turns.run('train', () => sleep(2));
    };
    const trainers = [trainer(), trainer()];
    // Its queue is empty between requests; the next one is queued before the device is free again.
    for (let k = 0; k < 60; k++) await turns.run('infer', () => sleep(2));
    training = false;
    await Promise.all(trainers);
    const share = turns.stats.infer.turns / (turns.stats.infer.turns + turns.stats.train.turns);
    expect(share).toBeGreaterThan(0.7);
    expect(share).toBeLessThan(0.8);
  });

  for (const d of [0.5, 0.25]) {
    it(`duty cycle ${d}: after a turn of t ms the device rests t·(1−d)/d ms`, async () => {
      const turns = new GpuTurns({ dutyCycle: d });
      const spans: Array<[number, number]> = [];
      const task = async () => {
        const t0 = performance.now();
        await sleep(20);
        spans.push([t0, performance.now()]);
      };
      const t0 = performance.now();
      await Promise.all(Array.from({ length: 5 }, () => turns.run('train', task)));
      const wall = performance.now() - t0;
      const excess: number[] = [];
      for (let k = 1; k < spans.length; k++) {
        const t = spans[k - 1][1] - spans[k - 1][0];
        const rest = (t * (1 - d)) / d;
        const gap = spans[k][0] - spans[k - 1][1];
        expect(gap, `gap before turn ${k}`).toBeGreaterThanOrEqual(rest - 0.5);
        excess.push(gap / rest);
      }
      // Never shorter than asked; longer only by timer lateness, which a loaded machine stretches now and then:
      // the typical gap is the rest.
      excess.sort((a, b) => a - b);
      expect(excess[1], `gap/rest ${excess.map((x) => x.toFixed(2))}`).toBeLessThan(1.3);
      const busy = turns.stats.train.busyMs;
      // Four rests between five turns: busy/d minus the last rest.
      expect(wall).toBeGreaterThan(busy / d - (busy / 5) * ((1 - d) / d) - 5);
      expect(turns.stats.restMs).toBeCloseTo((busy * (1 - d)) / d, 0);
    });
  }

  it('changing the duty cycle during a rest shortens it', async () => {
    const turns = new GpuTurns({ dutyCycle: 0.01 });
    await turns.run('train', () => sleep(20)); // would rest ~2 s
    const t0 = performance.now();
    const next = turns.run('train', () => performance.now());
    await sleep(10);
    turns.dutyCycle = 1;
    const started = await next;
    expect(started - t0).toBeLessThan(100);
  });

  it('pause: the running turn finishes, no new turn starts until resume', async () => {
    const turns = new GpuTurns();
    const ran: string[] = [];
    const first = turns.run('train', async () => {
      await sleep(20);
      ran.push('first');
    });
    await sleep(5); // the first is running
    const second = turns.run('infer', async () => void ran.push('second'));
    turns.pause();
    expect(turns.paused).toBe(true);
    await first;
    await sleep(60);
    expect(ran).toEqual(['first']);
    expect(turns.waiting('infer')).toBe(1);
    turns.resume();
    await second;
    expect(ran).toEqual(['first', 'second']);
    expect(turns.stats.infer.maxWaitMs).toBeGreaterThan(60);
  });

  it('a turn that throws or rejects fails alone: the queue goes on', async () => {
    const turns = new GpuTurns();
    const sync = turns.run('train', () => {
      throw new Error('sync boom');
    });
    const async_ = turns.run('infer', async () => {
      await sleep(1);
      throw new Error('async boom');
    });
    const after = turns.run('train', async () => 42);
    const [a, b, c] = await Promise.allSettled([sync, async_, after]);
    expect(a).toMatchObject({ status: 'rejected', reason: { message: 'sync boom' } });
    expect(b).toMatchObject({ status: 'rejected', reason: { message: 'async boom' } });
    expect(c).toEqual({ status: 'fulfilled', value: 42 });
    expect(turns.stats.train).toMatchObject({ turns: 2, failed: 1 });
    expect(turns.stats.infer).toMatchObject({ turns: 1, failed: 1 });
    expect(turns.current).toBeUndefined();
  });

  it('an aborted signal drops a queued turn without running it', async () => {
    const turns = new GpuTurns();
    const g = gate();
    const blocker = turns.run('train', g.task);
    const ctl = new AbortController();
    let ran = false;
    const dropped = turns.run('train', () => void (ran = true), { signal: ctl.signal });
    const kept = turns.run('infer', () => 'kept');
    ctl.abort(new Error('pipeline changed'));
    await expect(dropped).rejects.toBeInstanceOf(TurnAbortedError);
    await expect(dropped).rejects.toThrow('pipeline changed');
    g.open();
    await blocker;
    expect(await kept).toBe('kept');
    expect(ran).toBe(false);
    await expect(turns.run('train', () => 1, { signal: ctl.signal })).rejects.toBeInstanceOf(TurnAbortedError);
  });

  it('refuses bad settings with a reason', async () => {
    expect(() => new GpuTurns({ inferenceShare: 1.5 })).toThrow(ArgumentError);
    expect(() => new GpuTurns({ inferenceShare: Number.NaN })).toThrow(/inference share/);
    expect(() => new GpuTurns({ dutyCycle: 0 })).toThrow(/duty cycle must be a number in \(0, 1\]/);
    const turns = new GpuTurns();
    expect(() => (turns.dutyCycle = 2)).toThrow(ArgumentError);
    expect(turns.dutyCycle).toBe(1);
    await expect(turns.run('render' as TurnKind, () => 1)).rejects.toThrow(/turn kind/);
  });
});
