/**
 * Holds the worker's state (phase.ts) and the one AbortController of the phase's work. Every event goes
 * through dispatch(); a transition into `abandoned` or `stopped` aborts the work, and a transition that begins
 * new work (`freezing`, `idle`) gives it a fresh signal. This is the only place the work is aborted.
 */
import { abortable, Reconfigure } from '../rendezvous.ts';
import { INITIAL, reduce, type WorkerEvent, type WorkerState } from './phase.ts';

export class PhaseDriver {
  private current: WorkerState = INITIAL;
  private ctl = new AbortController();
  private readonly waiters = new Set<() => void>();

  get state(): WorkerState {
    return this.current;
  }

  /** Aborted (with Reconfigure) when the state machine abandons or stops the work of this phase. */
  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  get stopped(): boolean {
    return this.current.phase === 'stopped';
  }

  /** Applies the event (PhaseError when the phase refuses it) and what the transition means for the work. */
  dispatch(event: WorkerEvent): WorkerState {
    const before = this.current;
    const after = reduce(before, event);
    this.current = after;
    if (after.phase !== before.phase) {
      if (after.phase === 'freezing' || after.phase === 'idle') this.ctl = new AbortController();
      if (after.phase === 'abandoned' || after.phase === 'stopped')
        this.ctl.abort(new Reconfigure(after.cancelled ?? after.phase));
    }
    for (const w of [...this.waiters]) w();
    return after;
  }

  /** The work's own next step: refused as Reconfigure once the work was abandoned, so the work ends there. */
  advance(event: WorkerEvent, signal: AbortSignal): WorkerState {
    if (signal.aborted) throw new Reconfigure(String(signal.reason?.message ?? signal.reason));
    return this.dispatch(event);
  }

  /** Resolves once `ok(state)` holds; rejects with Reconfigure when `signal` aborts first. */
  async until(ok: (s: WorkerState) => boolean, signal?: AbortSignal): Promise<void> {
    while (!ok(this.current)) {
      let wake = () => {};
      const changed = new Promise<void>((r) => (wake = r));
      this.waiters.add(wake);
      try {
        await (signal ? abortable(changed, signal) : changed);
      } finally {
        this.waiters.delete(wake);
      }
    }
  }
}
