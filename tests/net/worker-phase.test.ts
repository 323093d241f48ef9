/**
 * The swarm worker's phases (src/net/worker/phase.ts): every transition of the table, the events each phase
 * ignores, and every refusal; then the driver (phase-driver.ts), the one place the phase's work is aborted —
 * by a pipeline change while configuring, agreeing, training or paused, by a worker of the round leaving it,
 * and by stop() in every phase. Pure: no network, no GPU.
 */
import { describe, expect, it } from 'vitest';
import { Reconfigure } from '../../src/net/rendezvous.ts';
import {
  type EventType,
  INITIAL,
  PhaseError,
  reduce,
  takes,
  WORKER_PHASES,
  type WorkerEvent,
  type WorkerPhase,
  type WorkerState,
} from '../../src/net/worker/phase.ts';
import { PhaseDriver } from '../../src/net/worker/phase-driver.ts';

const L1 = 'layout-1';
const L2 = 'layout-2';

/** A state in `phase` with the wire phase the path to it leaves, in layout L1 and round 3. */
function at(phase: WorkerPhase, over: Partial<WorkerState> = {}): WorkerState {
  const wire: Record<WorkerPhase, WorkerState['wire']> = {
    joining: 'idle',
    idle: 'idle',
    freezing: 'idle',
    agreeing: 'paused',
    lost: 'paused',
    ready: 'ready',
    training: 'training',
    backoff: 'training',
    abandoned: 'training',
    done: 'training',
    stopped: 'training',
  };
  return { ...INITIAL, phase, wire: wire[phase], layout: phase === 'joining' ? '' : L1, round: 3, ...over };
}

const EVENTS: Record<EventType, WorkerEvent> = {
  configure: { type: 'configure', layout: L2 },
  wait: { type: 'wait', layout: 'wait' },
  frozen: { type: 'frozen' },
  'stage-lost': { type: 'stage-lost' },
  configured: { type: 'configured', round: 4 },
  'all-ready': { type: 'all-ready' },
  'step-started': { type: 'step-started' },
  'step-ended': { type: 'step-ended' },
  failed: { type: 'failed' },
  'target-reached': { type: 'target-reached' },
  'layout-changed': { type: 'layout-changed', layout: L2, reason: 'abc123 left it' },
  'member-paused': { type: 'member-paused', layout: L1, round: 3, reason: 'abc123 left round 3' },
  pause: { type: 'pause' },
  resume: { type: 'resume' },
  stop: { type: 'stop' },
};

/** Written out independently of the table: which phases take which events. */
const TAKEN: Record<EventType, WorkerPhase[]> = {
  configure: ['joining', 'backoff', 'abandoned'],
  wait: ['joining', 'backoff', 'abandoned'],
  frozen: ['freezing'],
  'stage-lost': ['agreeing'],
  configured: ['agreeing'],
  'all-ready': ['ready'],
  'step-started': ['training'],
  'step-ended': ['training', 'abandoned', 'stopped'],
  failed: ['freezing', 'agreeing', 'ready', 'training'],
  'target-reached': ['training', 'abandoned', 'stopped'],
  'layout-changed': [...WORKER_PHASES],
  'member-paused': [...WORKER_PHASES],
  pause: [...WORKER_PHASES],
  resume: [...WORKER_PHASES],
  stop: [...WORKER_PHASES],
};

describe('worker phases: the transition table', () => {
  it('refuses, with both names, every event a phase does not take', () => {
    let refused = 0;
    for (const phase of WORKER_PHASES)
      for (const type of Object.keys(EVENTS) as EventType[]) {
        const expected = TAKEN[type].includes(phase);
        expect(takes(phase, type), `${phase} × ${type}`).toBe(expected);
        if (expected) continue;
        expect(() => reduce(at(phase), EVENTS[type])).toThrow(PhaseError);
        expect(() => reduce(at(phase), EVENTS[type])).toThrow(`worker phase ${phase}: refused event ${type}`);
        refused++;
      }
    expect(refused).toBeGreaterThan(80);
  });

  it('configures a new pipeline from joining, a back-off or an abandoned round', () => {
    for (const from of ['joining', 'backoff', 'abandoned'] as const) {
      const s = reduce(at(from, { cancelled: 'x', paused: true }), EVENTS.configure);
      expect(s).toEqual({ ...INITIAL, phase: 'freezing', wire: 'idle', layout: L2, round: 3, paused: true });
      expect(reduce(at(from), EVENTS.wait)).toMatchObject({ phase: 'idle', wire: 'idle', layout: 'wait' });
    }
  });

  it('walks a configuration to training and the step target', () => {
    let s = reduce(at('freezing'), EVENTS.frozen);
    expect(s).toMatchObject({ phase: 'agreeing', wire: 'paused', round: 3 });
    s = reduce(s, EVENTS.configured);
    expect(s).toMatchObject({ phase: 'ready', wire: 'ready', round: 4 });
    s = reduce(s, EVENTS['all-ready']);
    expect(s).toMatchObject({ phase: 'training', wire: 'training', stepping: false });
    s = reduce(s, EVENTS['step-started']);
    expect(s.stepping).toBe(true);
    s = reduce(s, EVENTS['step-ended']);
    expect(s.stepping).toBe(false);
    expect(reduce(s, EVENTS['target-reached'])).toMatchObject({ phase: 'done', wire: 'training' });
  });

  it('says a stage is lost while agreeing, and keeps saying paused', () => {
    expect(reduce(at('agreeing'), EVENTS['stage-lost'])).toMatchObject({ phase: 'lost', wire: 'paused' });
  });

  it('backs off after a failure of its own, telling the others what it said before', () => {
    for (const from of ['freezing', 'agreeing', 'ready', 'training'] as const) {
      const before = at(from);
      expect(reduce(before, EVENTS.failed)).toEqual({ ...before, phase: 'backoff' });
    }
  });

  it('abandons the work of every phase that has some when the layout changes', () => {
    for (const from of ['idle', 'freezing', 'agreeing', 'lost', 'ready', 'training'] as const) {
      const before = at(from);
      expect(reduce(before, EVENTS['layout-changed'])).toEqual({
        ...before,
        phase: 'abandoned',
        cancelled: 'abc123 left it',
      });
      // The same layout again is no change.
      expect(reduce(before, { ...EVENTS['layout-changed'], layout: L1 } as WorkerEvent)).toBe(before);
    }
    // Before any layout, or with no work of its own, a change is only heard.
    for (const from of ['joining', 'backoff', 'abandoned', 'done', 'stopped'] as const) {
      const before = at(from);
      expect(reduce(before, EVENTS['layout-changed']), from).toBe(before);
    }
  });

  it('abandons a ready or training round when one of its workers is agreeing on a resume again', () => {
    for (const from of ['ready', 'training'] as const) {
      const before = at(from);
      expect(reduce(before, EVENTS['member-paused'])).toMatchObject({
        phase: 'abandoned',
        cancelled: 'abc123 left round 3',
      });
      // A later round counts too; an earlier one, or another layout, does not.
      expect(reduce(before, { ...EVENTS['member-paused'], round: 5 } as WorkerEvent).phase).toBe('abandoned');
      expect(reduce(before, { ...EVENTS['member-paused'], round: 2 } as WorkerEvent)).toBe(before);
      expect(reduce(before, { ...EVENTS['member-paused'], layout: L2 } as WorkerEvent)).toBe(before);
    }
    for (const from of WORKER_PHASES.filter((p) => p !== 'ready' && p !== 'training')) {
      const before = at(from);
      expect(reduce(before, EVENTS['member-paused']), from).toBe(before);
    }
  });

  it('lets an abandoned or stopped step end, and counts a target reached just as the round ended', () => {
    expect(reduce(at('abandoned', { stepping: true }), EVENTS['step-ended']).stepping).toBe(false);
    expect(reduce(at('stopped', { stepping: true }), EVENTS['step-ended'])).toMatchObject({
      phase: 'stopped',
      stepping: false,
    });
    expect(reduce(at('abandoned'), EVENTS['target-reached']).phase).toBe('done');
    expect(reduce(at('stopped'), EVENTS['target-reached']).phase).toBe('stopped');
  });

  it('pauses and resumes in every phase without leaving it', () => {
    for (const phase of WORKER_PHASES) {
      const paused = reduce(at(phase), EVENTS.pause);
      expect(paused).toEqual({ ...at(phase), paused: true });
      expect(reduce(paused, EVENTS.resume)).toEqual(at(phase));
    }
  });

  it('stops from every phase, once', () => {
    for (const phase of WORKER_PHASES.filter((p) => p !== 'stopped'))
      expect(reduce(at(phase), EVENTS.stop)).toEqual({ ...at(phase), phase: 'stopped', cancelled: 'worker stopped' });
    const stopped = at('stopped', { cancelled: 'worker stopped' });
    expect(reduce(stopped, EVENTS.stop)).toBe(stopped);
  });
});

/** A driver walked to `phase` through the events a worker sends. */
function driverIn(phase: 'idle' | 'freezing' | 'agreeing' | 'lost' | 'ready' | 'training'): PhaseDriver {
  const d = new PhaseDriver();
  if (phase === 'idle') {
    d.dispatch({ type: 'wait', layout: L1 });
    return d;
  }
  d.dispatch({ type: 'configure', layout: L1 });
  const path: WorkerEvent[] = [];
  if (phase !== 'freezing') path.push(EVENTS.frozen);
  if (phase === 'lost') path.push(EVENTS['stage-lost']);
  if (phase === 'ready' || phase === 'training') path.push({ type: 'configured', round: 3 });
  if (phase === 'training') path.push(EVENTS['all-ready']);
  for (const e of path) d.dispatch(e);
  expect(d.state.phase).toBe(phase);
  return d;
}

const reasonOf = (s: AbortSignal) => (s.reason as Error).message;

describe('worker phases: the driver aborts the work, and nothing else does', () => {
  it('gives each new configuration a fresh signal', () => {
    const d = driverIn('training');
    const first = d.signal;
    d.dispatch({ type: 'layout-changed', layout: L2, reason: 'new layout' });
    expect(first.aborted).toBe(true);
    d.dispatch({ type: 'configure', layout: L2 });
    expect(d.signal).not.toBe(first);
    expect(d.signal.aborted).toBe(false);
  });

  for (const phase of ['idle', 'freezing', 'agreeing', 'lost', 'ready', 'training'] as const)
    it(`aborts the work when the pipeline changes while ${phase}`, () => {
      const d = driverIn(phase);
      const signal = d.signal;
      d.dispatch({ type: 'layout-changed', layout: L1, reason: 'same layout' });
      expect(signal.aborted).toBe(false);
      d.dispatch({ type: 'layout-changed', layout: L2, reason: 'abc123 left it' });
      expect(signal.aborted).toBe(true);
      expect(signal.reason).toBeInstanceOf(Reconfigure);
      expect(reasonOf(signal)).toBe('abc123 left it');
      expect(d.state.phase).toBe('abandoned');
    });

  it('aborts a training round the volunteer paused when the pipeline changes', () => {
    const d = driverIn('training');
    d.dispatch({ type: 'pause' });
    const signal = d.signal;
    d.dispatch({ type: 'layout-changed', layout: L2, reason: 'new layout' });
    expect(signal.aborted).toBe(true);
    expect(d.state).toMatchObject({ phase: 'abandoned', paused: true });
  });

  it('aborts a ready or training round when a worker of it pauses again, not when another does', () => {
    for (const phase of ['ready', 'training'] as const) {
      const d = driverIn(phase);
      d.dispatch({ type: 'member-paused', layout: L1, round: 2, reason: 'an older round' });
      expect(d.signal.aborted).toBe(false);
      d.dispatch({ type: 'member-paused', layout: L1, round: 3, reason: 'abc123 left round 3' });
      expect(reasonOf(d.signal)).toBe('abc123 left round 3');
    }
  });

  it('ends a stage-lost wait only when the pipeline changes', async () => {
    const d = driverIn('lost');
    const wait = d.until(() => false, d.signal);
    d.dispatch({ type: 'member-paused', layout: L1, round: 9, reason: 'ignored while lost' });
    d.dispatch({ type: 'layout-changed', layout: L2, reason: 'a holder came back' });
    await expect(wait).rejects.toThrow(Reconfigure);
    await expect(wait).rejects.toThrow('a holder came back');
  });

  for (const phase of ['idle', 'freezing', 'agreeing', 'lost', 'ready', 'training'] as const)
    it(`stop() aborts the work while ${phase}`, () => {
      const d = driverIn(phase);
      const signal = d.signal;
      d.dispatch({ type: 'stop' });
      expect(reasonOf(signal)).toBe('worker stopped');
      expect(d.stopped).toBe(true);
    });

  it('stop() while joining, backing off, abandoned or done stops without new work', () => {
    const joining = new PhaseDriver();
    joining.dispatch({ type: 'stop' });
    expect(joining.state.phase).toBe('stopped');

    const backoff = driverIn('training');
    backoff.dispatch({ type: 'failed' });
    backoff.dispatch({ type: 'stop' });
    expect(backoff.state.phase).toBe('stopped');

    const abandoned = driverIn('training');
    abandoned.dispatch({ type: 'layout-changed', layout: L2, reason: 'new layout' });
    const first = abandoned.signal.reason;
    abandoned.dispatch({ type: 'stop' });
    expect(abandoned.state.phase).toBe('stopped');
    expect(abandoned.signal.reason).toBe(first); // aborted once, with the first reason

    const done = driverIn('training');
    done.dispatch({ type: 'target-reached' });
    done.dispatch({ type: 'stop' });
    expect(done.state.phase).toBe('stopped');
  });

  it('a failure backs off without aborting; the next configuration starts fresh', () => {
    const d = driverIn('agreeing');
    const signal = d.signal;
    d.dispatch({ type: 'failed' });
    expect(d.state.phase).toBe('backoff');
    expect(signal.aborted).toBe(false);
    d.dispatch({ type: 'layout-changed', layout: L2, reason: 'heard during the back-off' });
    expect(d.state.phase).toBe('backoff');
    d.dispatch({ type: 'configure', layout: L2 });
    expect(d.state).toMatchObject({ phase: 'freezing', layout: L2 });
  });

  it('refuses the work’s own next step once it was abandoned, as Reconfigure', () => {
    const d = driverIn('freezing');
    const signal = d.signal;
    d.dispatch({ type: 'layout-changed', layout: L2, reason: 'new layout' });
    expect(() => d.advance({ type: 'frozen' }, signal)).toThrow(Reconfigure);
    expect(() => d.dispatch({ type: 'frozen' })).toThrow(PhaseError);
  });

  it('wakes a paused step loop on resume and on stop', async () => {
    const d = driverIn('training');
    d.dispatch({ type: 'pause' });
    const resumed = d.until((s) => !s.paused, d.signal);
    d.dispatch({ type: 'resume' });
    await resumed;
    d.dispatch({ type: 'pause' });
    const stopped = d.until((s) => !s.paused || s.phase === 'stopped');
    d.dispatch({ type: 'stop' });
    await stopped;
    expect(d.state).toMatchObject({ phase: 'stopped', paused: true });
  });
});
