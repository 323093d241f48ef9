import { create } from 'zustand';
import { TesseraError } from '../../errors.ts';
import type { JoinAnswer } from '../../net/coordinator-client.ts';
import { tokensPerStep } from '../../train/run-derived.ts';
import type { WorkerStep } from '../../net/swarm-worker.ts';
import type { SnapshotInfo } from '../../net/snapshots.ts';
import { readyGpu, takeLock } from './prerequisites.ts';
import type { PauseHook, Session, Speed, TuningHooks } from './session.ts';
import { holdReason, useVolunteerSettings, watchDevice, type DeviceState } from './settings.ts';
import type { SnapshotBackend } from './snapshot-browser.ts';

/**
 * The Volunteer page's state: this tab as one peer of the swarm. Life cycle:
 * idle → starting (GPU check, relay) → waiting (for a stage / the other stages) → loading (corpus) →
 * connecting (WebRTC) → training ⇄ pausing → paused; any → leaving → stopped; a failure → error.
 * stopped and error can join again.
 */
export type VolunteerStatus =
  | 'idle'
  | 'starting'
  | 'waiting'
  | 'loading'
  | 'connecting'
  | 'training'
  | 'pausing'
  | 'paused'
  | 'leaving'
  | 'stopped'
  | 'error';

export interface StageInfo {
  modelId: string;
  stage: number;
  stages: number;
  replica: number;
  /** Holders of this stage, this tab included. */
  replicas: number;
  firstLayer: number;
  endLayer: number;
  layers: number;
  vocab: number;
  /** Tokens one step pushes through this stage (micro-batches × batch × context). */
  tokensPerStep: number;
  /** Stages of the model that have a holder now. */
  stagesHeld: number;
  /** Distinct peers of the pipeline, this tab included (it connects to all the others). */
  pipelinePeers: number;
}

/** What the tab keeps of the stages it trained (src/app/volunteer/snapshot-browser.ts), for the Volunteer page. */
export interface StoredStages {
  backend: SnapshotBackend;
  where: string;
  bytes: number;
  count: number;
  /** The newest snapshot of each model, newest first. */
  newest: SnapshotInfo[];
  /** Whether the browser promised not to evict this origin's storage; undefined where it cannot say. */
  persisted?: boolean;
}

export interface VolunteerState {
  status: VolunteerStatus;
  /** One sentence on what is happening now. */
  detail: string;
  error?: string;
  peerId?: string;
  speed?: Speed;
  assignment?: StageInfo;
  /** Steps this tab completed in this session. */
  stepsDone: number;
  /** The model's step number of the last step completed here. */
  lastStep?: number;
  /** Mean loss of the last step (only the last stage computes it). */
  loss?: number;
  /** Training tokens/s of the last step. */
  tokensPerSecond?: number;
  bytesSent: number;
  bytesReceived: number;
  /** Peers with a direct WebRTC connection to this tab. */
  peers: number;
  /** False when this build's SwarmWorker cannot pause (it lacks the pause/resume hook). */
  canPause: boolean;
  /** Which of the GPU-use settings this build's worker applies (optional hooks, see session.ts). */
  canTune: { dutyCycle: boolean; inferenceShare: boolean };
  /** Why the tab paused itself (hidden, on battery), while it did; a pause by the volunteer has none. */
  heldFor?: string;
  /** Visibility and power source, as last seen while a session ran. */
  device?: DeviceState;
  log: string[];
  /** The stage snapshots this browser holds; undefined until first read. */
  storage?: StoredStages;
  storageError?: string;
  /** A clear of the stored stages is under way. */
  clearing: boolean;
  /** Reads the stored stages now and after every change to them; returns the unsubscribe. */
  watchStorage(): () => void;
  /** Deletes every stored stage snapshot; refused while this tab (or another of this browser) volunteers. */
  clearStorage(): Promise<void>;
  join(): Promise<void>;
  pause(): void;
  resume(): void;
  leave(): Promise<void>;
}

const LOG_LINES = 12;
const ACTIVE: readonly VolunteerStatus[] = [
  'starting',
  'waiting',
  'loading',
  'connecting',
  'training',
  'pausing',
  'paused',
];
const BEFORE_TRAINING: readonly VolunteerStatus[] = ['starting', 'waiting'];

export const isActive = (s: VolunteerStatus) => ACTIVE.includes(s);

/** The session being started or running, outside the store (not state to render). A new join replaces it. */
interface Current {
  session?: Session;
  pause?: PauseHook;
  tuning?: TuningHooks;
  /** Stops the visibility/battery and settings watchers. */
  unwatch?: () => void;
  releaseLock: () => void;
}
let current: Current | undefined;
/**
 * Starts of this tab that hold the volunteer lock: one abandoned by Leave keeps it until its GPU check or relay
 * connection ends, and must not make Clear believe another tab volunteers.
 */
let holdingLock = 0;

function stageInfo(a: JoinAnswer): StageInfo | undefined {
  if (a.status !== 'assigned') return undefined;
  const x = a.assignment;
  return {
    modelId: x.modelId,
    stage: x.stage,
    stages: x.stages,
    replica: x.replica,
    replicas: x.pipeline.find((p) => p.stage === x.stage)?.peers.length ?? 1,
    firstLayer: x.firstLayer,
    endLayer: x.endLayer,
    layers: x.spec.model.layers,
    vocab: x.spec.model.vocab,
    tokensPerStep: tokensPerStep(x.spec),
    stagesHeld: x.pipeline.filter((p) => p.peers.length > 0).length,
    pipelinePeers: new Set(x.pipeline.flatMap((p) => p.peers.map((q) => q.peerId))).size,
  };
}

class Abandoned extends TesseraError {
  constructor() {
    super('abandoned', 'abandoned: the volunteer left or joined again while starting');
  }
}

const fresh = {
  heldFor: undefined,
  stepsDone: 0,
  lastStep: undefined,
  loss: undefined,
  tokensPerSecond: undefined,
  bytesSent: 0,
  bytesReceived: 0,
  peers: 0,
  error: undefined,
  assignment: undefined,
};

const openSnapshots = () => import('./snapshot-browser.ts').then((m) => m.browserSnapshots());

/** The newest snapshot of each model (the list is newest first). */
function newestPerModel(list: SnapshotInfo[]): SnapshotInfo[] {
  const seen = new Set<string>();
  return list.filter((x) => !seen.has(x.model) && seen.add(x.model));
}

export const useVolunteerStore = create<VolunteerState>()((set, get) => {
  let lastLine = '';
  let storageReads = 0;

  /** Reads the figures; of reads that overlap (a put while the page opens), only the latest one is shown. */
  async function readStorage(): Promise<void> {
    const n = ++storageReads;
    try {
      const store = await openSnapshots();
      const [u, list, persisted] = await Promise.all([
        store.usage(),
        store.list(),
        navigator.storage?.persisted?.().catch(() => undefined),
      ]);
      if (n !== storageReads) return;
      set({
        storage: { backend: store.backend, where: store.where, ...u, newest: newestPerModel(list), persisted },
        storageError: undefined,
      });
    } catch (e) {
      if (n === storageReads) set({ storageError: `Cannot read the stored stages: ${(e as Error).message}` });
    }
  }
  const say = (line: string) => {
    lastLine = line;
    set((s) => ({ log: [...s.log, `${new Date().toLocaleTimeString()} ${line}`].slice(-LOG_LINES) }));
  };

  function onAnswer(a: JoinAnswer): void {
    const info = stageInfo(a);
    set({ assignment: info });
    if (!BEFORE_TRAINING.includes(get().status)) return;
    if (a.status === 'wait') set({ status: 'waiting', detail: `Waiting for a stage: ${a.reason}.` });
    else if (info && info.stagesHeld < info.stages) {
      set({
        status: 'waiting',
        detail:
          `Holding stage ${info.stage + 1} of ${info.stages}; waiting for volunteers for the other ` +
          `stages (${info.stagesHeld} of ${info.stages} held).`,
      });
    } else
      set({
        status: 'waiting',
        detail: 'Every stage has a holder; starting once the layout holds still for a heartbeat.',
      });
  }

  function onStep(s: WorkerStep): void {
    const perStep = get().assignment?.tokensPerStep ?? 0;
    const status = get().status;
    set((st) => ({
      stepsDone: st.stepsDone + 1,
      lastStep: s.step,
      loss: s.loss ?? st.loss,
      bytesSent: s.bytesSent,
      bytesReceived: s.bytesReceived,
      tokensPerSecond: s.ms > 0 ? perStep / (s.ms / 1000) : undefined,
    }));
    // A step that lands while leaving (or already paused) changes the numbers, not what the tab is doing.
    if (status === 'pausing') {
      const why = get().heldFor;
      set({
        status: 'paused',
        detail:
          `Paused after step ${s.step + 1}${why ? ` because ${why}` : ''}. This tab still holds its ` +
          `stage; the rest of its pipeline waits for it.`,
      });
    } else if (status === 'training' || status === 'connecting') {
      set({ status: 'training', detail: `Training: step ${s.step + 1} done.` });
      checkHold();
    }
  }

  /**
   * The volunteer's "pause when hidden / on battery" settings: pause after the step in flight while a reason
   * holds, resume when none does — but never undo a pause the volunteer made by hand.
   */
  function checkHold(): void {
    const c = current;
    const device = get().device;
    if (!c?.pause || !device) return;
    const why = holdReason(device, useVolunteerSettings.getState());
    const { status, heldFor } = get();
    if (why && status === 'training') {
      c.pause.pause();
      set({ status: 'pausing', heldFor: why, detail: `Pausing after the step in flight: ${why} (see Settings).` });
    } else if (!why && heldFor && (status === 'paused' || status === 'pausing')) {
      c.pause.resume();
      set({ status: 'training', heldFor: undefined, detail: 'Resumed: training the next step…' });
    }
  }

  /** Applies the GPU-use cap and the inference share to the worker now and whenever the volunteer moves them. */
  function tune(c: Current): () => void {
    const apply = () => {
      const st = useVolunteerSettings.getState();
      c.tuning?.setDutyCycle?.(st.dutyCycle);
      c.tuning?.setInferencePriority?.(st.inferenceShare);
    };
    apply();
    return useVolunteerSettings.subscribe((st, prev) => {
      if (st.dutyCycle !== prev.dutyCycle || st.inferenceShare !== prev.inferenceShare) apply();
      if (st.pauseWhenHidden !== prev.pauseWhenHidden || st.pauseOnBattery !== prev.pauseOnBattery) checkHold();
    });
  }

  /** Ends `c` (leaves, stops the peer, frees the lock) and shows why, unless a newer join replaced it. */
  async function finish(c: Current, error?: unknown): Promise<void> {
    c.unwatch?.();
    try {
      await c.session?.close();
    } catch (e) {
      say(`leaving failed: ${(e as Error).message}`);
    }
    c.releaseLock();
    if (current !== c) return;
    current = undefined;
    if (error !== undefined)
      set({ status: 'error', error: (error as Error).message ?? String(error), detail: 'Stopped by an error.' });
    else
      set({
        status: 'stopped',
        detail:
          get().status === 'leaving'
            ? 'You left the swarm.'
            : `Stopped: ${lastLine.replace(/^\[worker \w+\] /, '') || 'the worker ended'}.`,
      });
  }

  /** Starts `c`'s session; throws Abandoned as soon as a leave() or a newer join replaced it. */
  async function start(c: Current): Promise<void> {
    const live = () => current === c;
    const check = () => {
      if (!live()) throw new Abandoned();
    };
    const release = await takeLock();
    holdingLock++;
    let released = false;
    c.releaseLock = () => {
      if (released) return;
      released = true;
      holdingLock--;
      release();
    };
    check();
    const gpu = await readyGpu();
    const { startSession, tabSpeed, pauseHook, tuningHooks } = await import('./session.ts');
    check();
    set({
      detail: gpu.adapter.isSoftware
        ? 'Software GPU: using a fixed, modest speed estimate.'
        : 'Timing this GPU on the reference workload…',
    });
    const speed = await tabSpeed(gpu);
    check();
    set({ speed, detail: 'Connecting to the coordinator’s relay…' });
    const session = await startSession(
      gpu,
      speed,
      {
        answer: (a) => live() && onAnswer(a),
        phase: (p) => {
          if (!live()) return;
          if (p === 'loading')
            set({
              status: 'loading',
              detail:
                `Downloading the training corpus (vocabulary ${get().assignment?.vocab ?? '?'}) from the ` +
                `coordinator…`,
            });
          else set({ status: 'connecting', detail: 'Connecting to the other stages over WebRTC…' });
        },
        step: (s) => live() && onStep(s),
        peers: (n) => {
          if (!live()) return;
          set({ peers: n });
          const a = get().assignment;
          if (get().status === 'connecting' && a && n >= a.pipelinePeers - 1) {
            set({
              status: 'training',
              detail: 'Connected. Training the first step (it compiles the GPU kernels, so it is the slowest)…',
            });
          }
        },
        log: (line) => live() && say(line),
      },
      location.origin,
      useVolunteerSettings.getState().preferModel ?? undefined,
    );
    c.session = session;
    c.pause = pauseHook(session.worker);
    c.tuning = tuningHooks(session.worker);
    const stopTuning = tune(c);
    const stopWatching = watchDevice((device) => {
      if (!live()) return;
      set({ device });
      checkHold();
    });
    c.unwatch = () => {
      stopTuning();
      stopWatching();
    };
    session.done.then(
      () => finish(c),
      (e) => finish(c, e),
    );
    check();
    set({
      peerId: session.peerId,
      canPause: c.pause !== undefined,
      canTune: { dutyCycle: !!c.tuning.setDutyCycle, inferenceShare: !!c.tuning.setInferencePriority },
    });
    if (get().status === 'starting') set({ status: 'waiting', detail: 'Asking the coordinator for a stage…' });
  }

  return {
    status: 'idle',
    detail: 'Not volunteering.',
    ...fresh,
    canPause: false,
    canTune: { dutyCycle: false, inferenceShare: false },
    log: [],
    clearing: false,

    watchStorage() {
      let unsubscribe: (() => void) | undefined;
      let stopped = false;
      void readStorage();
      openSnapshots().then(
        (store) => {
          if (!stopped) unsubscribe = store.subscribe(() => void readStorage());
        },
        () => {},
      );
      return () => {
        stopped = true;
        unsubscribe?.();
      };
    },

    async clearStorage() {
      const status = get().status;
      if (isActive(status) || status === 'leaving' || get().clearing) {
        set({
          storageError: 'Leave the swarm first: this tab reads and writes its stored stages while it volunteers.',
        });
        return;
      }
      set({ clearing: true, storageError: undefined });
      try {
        // Another tab of this browser that volunteers holds the lock and uses the same storage.
        const release = holdingLock > 0 ? () => {} : await takeLock();
        try {
          await (await openSnapshots()).clear();
        } finally {
          release();
        }
      } catch (e) {
        set({ storageError: `Could not clear the stored stages: ${(e as Error).message}` });
      } finally {
        set({ clearing: false });
        await readStorage();
      }
    },

    async join() {
      if (isActive(get().status) || get().status === 'leaving' || get().clearing) return;
      set({ ...fresh, status: 'starting', detail: 'Checking this GPU…', log: [] });
      lastLine = '';
      const c: Current = { releaseLock: () => {} };
      current = c;
      try {
        await start(c);
      } catch (e) {
        await finish(c, e);
      }
    },

    pause() {
      if (get().status !== 'training' || !current?.pause) return;
      current.pause.pause();
      set({ status: 'pausing', heldFor: undefined, detail: 'Pausing after the step in flight…' });
    },

    resume() {
      const s = get().status;
      if ((s !== 'paused' && s !== 'pausing') || !current?.pause) return;
      current.pause.resume();
      // The volunteer's own resume wins over an automatic hold until the next change of visibility or power.
      set({ status: 'training', heldFor: undefined, detail: 'Resumed: training the next step…' });
    },

    async leave() {
      const c = current;
      if (!isActive(get().status) || !c) return;
      set({ status: 'leaving', detail: 'Leaving the swarm…' });
      // A running session ends through finish(); one still starting is abandoned by start(), which checks `current`.
      if (c.session) await c.session.close();
      else {
        current = undefined;
        set({ status: 'stopped', detail: 'You left the swarm.' });
      }
    },
  };
});

// For automated checks and the devtools console (src/app/test-hooks.ts): the page's snapshot store.
if (typeof window !== 'undefined')
  window.__tesseraSnapshots = (backend) => import('./snapshot-browser.ts').then((m) => m.browserSnapshots(backend));
