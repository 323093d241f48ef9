/**
 * The swarm worker's phases as a state machine: a pure reducer over typed events with one explicit transition
 * table. PhaseDriver (phase-driver.ts) holds the state and aborts the phase's work when a transition says so;
 * nothing else aborts it.
 *
 *   joining ─configure→ freezing ─frozen→ agreeing ─configured→ ready ─all-ready→ training ─target-reached→ done
 *      └──────wait────→ idle                  └─stage-lost→ lost
 *
 * Work in a phase ends in one of three ways: it moves on (above); it fails for a reason of its own (`failed` →
 * backoff, one heartbeat, then configure again); or it is abandoned (`layout-changed`, `member-paused` →
 * abandoned: the driver aborts the phase's signal and the loop configures the pipeline it now sees). `stop`
 * ends every phase. `pause`/`resume` (the volunteer's) are a flag, not a phase: the step loop holds between
 * steps while it is set.
 *
 * `wire` is what the worker tells the others of its pipeline (`/tessera/sync/2.0.0`); a phase that ends work
 * (backoff, abandoned, done, stopped) leaves it as it was, so a stage still on the GPU is never served while a
 * step may be writing it.
 */
import { TesseraError } from '../../errors.ts';
import type { Phase } from '../swarm-sync.ts';

export type WorkerPhase =
  /** Joined; waiting for a complete layout that held still for one heartbeat. */
  | 'joining'
  /** No complete pipeline (no assignment, or a stage without holder): waiting for the layout to change. */
  | 'idle'
  /** A new pipeline: reading the steps the coordinator recorded, to freeze what it tells the others. */
  | 'freezing'
  /** Frozen: agreeing with the others where to resume, taking its stage, setting up the round. */
  | 'agreeing'
  /** The plan says a stage has no holder left: waiting for the pipeline to change. */
  | 'lost'
  /** Its round is set up: waiting until every worker of the pipeline is ready too. */
  | 'ready'
  | 'training'
  /** The work failed (not a change): wait one heartbeat, then configure again. */
  | 'backoff'
  /** The work was abandoned (the pipeline changed, or a worker of this round left it): configure again now. */
  | 'abandoned'
  /** The step target was reached. */
  | 'done'
  | 'stopped';

export interface WorkerState {
  phase: WorkerPhase;
  wire: Phase;
  /** Layout key (src/net/resume.ts layoutKey; 'wait' without assignment) of the pipeline; '' before the first. */
  layout: string;
  /** The last round this worker was ready in (0: none yet). */
  round: number;
  /** Why the phase's work was abandoned or stopped: the reason its signal aborts with. */
  cancelled?: string;
  /** The volunteer paused it: no step starts until resume. */
  paused: boolean;
  /** A training step is in flight. */
  stepping: boolean;
}

export type WorkerEvent =
  | { type: 'configure'; layout: string }
  | { type: 'wait'; layout: string }
  | { type: 'frozen' }
  | { type: 'stage-lost' }
  | { type: 'configured'; round: number }
  | { type: 'all-ready' }
  | { type: 'step-started' }
  | { type: 'step-ended' }
  | { type: 'failed' }
  | { type: 'target-reached' }
  /** A heartbeat answer's layout (sent for every change; the same layout as this phase's changes nothing). */
  | { type: 'layout-changed'; layout: string; reason: string }
  /** A worker of this pipeline asked for statuses as paused: it is agreeing on a resume again. */
  | { type: 'member-paused'; layout: string; round: number; reason: string }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop' };

export type EventType = WorkerEvent['type'];

export const INITIAL: WorkerState = Object.freeze({
  phase: 'joining',
  wire: 'idle',
  layout: '',
  round: 0,
  paused: false,
  stepping: false,
});

/** An event the state machine does not take in this phase: a bug in the caller, said with both names. */
export class PhaseError extends TesseraError {
  constructor(state: WorkerState, event: WorkerEvent) {
    super('phase', `worker phase ${state.phase}: refused event ${event.type}`);
  }
}

type On<T extends EventType> = (s: WorkerState, e: Extract<WorkerEvent, { type: T }>) => WorkerState;

/** Leaves the state as it is: events that may arrive at any time (heartbeats, requests) and mean nothing here. */
const ignore = (s: WorkerState): WorkerState => s;
const abandon = (s: WorkerState, reason: string): WorkerState => ({ ...s, phase: 'abandoned', cancelled: reason });
const begin =
  (phase: 'freezing' | 'idle') =>
  (s: WorkerState, e: { layout: string }): WorkerState => ({
    ...s,
    phase,
    wire: 'idle',
    layout: e.layout,
    cancelled: undefined,
  });
const layoutChanged: On<'layout-changed'> = (s, e) => (s.layout && e.layout !== s.layout ? abandon(s, e.reason) : s);
/** Only a worker of this round, in this layout, that left it (paused at this round or later) ends the step. */
const memberPaused: On<'member-paused'> = (s, e) =>
  e.layout === s.layout && e.round >= s.round ? abandon(s, e.reason) : s;
const stop: On<'stop'> = (s) => ({ ...s, phase: 'stopped', cancelled: 'worker stopped' });
const pause: On<'pause'> = (s) => ({ ...s, paused: true });
const resume: On<'resume'> = (s) => ({ ...s, paused: false });

export const WORKER_PHASES: readonly WorkerPhase[] = [
  'joining',
  'idle',
  'freezing',
  'agreeing',
  'lost',
  'ready',
  'training',
  'backoff',
  'abandoned',
  'done',
  'stopped',
];
/** Phases with work that a change of the pipeline abandons. */
const ABANDONABLE: readonly WorkerPhase[] = ['idle', 'freezing', 'agreeing', 'lost', 'ready', 'training'];
const every = <T extends EventType>(on: On<T>, phases = WORKER_PHASES) =>
  Object.fromEntries(phases.map((p) => [p, on])) as Partial<Record<WorkerPhase, On<T>>>;
const stepEnded: On<'step-ended'> = (s) => ({ ...s, stepping: false });
const reached: On<'target-reached'> = (s) => ({ ...s, phase: 'done' });

/**
 * Per event, the phases that take it and what they become; a phase missing from an event's row refuses it
 * (PhaseError). Late reports of work that a change or stop() ended are taken where they can come (a step's
 * end, the target reached just as the round ended), nothing else.
 */
export const TRANSITIONS: { [T in EventType]: Partial<Record<WorkerPhase, On<T>>> } = {
  configure: { joining: begin('freezing'), backoff: begin('freezing'), abandoned: begin('freezing') },
  wait: { joining: begin('idle'), backoff: begin('idle'), abandoned: begin('idle') },
  frozen: { freezing: (s) => ({ ...s, phase: 'agreeing', wire: 'paused' }) },
  'stage-lost': { agreeing: (s) => ({ ...s, phase: 'lost' }) },
  configured: { agreeing: (s, e) => ({ ...s, phase: 'ready', wire: 'ready', round: e.round }) },
  'all-ready': { ready: (s) => ({ ...s, phase: 'training', wire: 'training' }) },
  'step-started': { training: (s) => ({ ...s, stepping: true }) },
  'step-ended': { training: stepEnded, abandoned: stepEnded, stopped: stepEnded },
  failed: every((s) => ({ ...s, phase: 'backoff' }), ['freezing', 'agreeing', 'ready', 'training']),
  'target-reached': { training: reached, abandoned: reached, stopped: ignore },
  'layout-changed': { ...every(ignore), ...every(layoutChanged, ABANDONABLE) },
  'member-paused': { ...every(ignore), ready: memberPaused, training: memberPaused },
  pause: every(pause),
  resume: every(resume),
  stop: { ...every(stop), stopped: ignore },
};

/** The next state; throws PhaseError when the phase does not take the event. */
export function reduce(state: WorkerState, event: WorkerEvent): WorkerState {
  const on = TRANSITIONS[event.type][state.phase] as On<typeof event.type> | undefined;
  if (!on) throw new PhaseError(state, event);
  return on(state, event as never);
}

/** Whether `phase` takes events of type `type` (refused otherwise). */
export function takes(phase: WorkerPhase, type: EventType): boolean {
  return TRANSITIONS[type][phase] !== undefined;
}
