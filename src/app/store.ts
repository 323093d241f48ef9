import { create } from 'zustand';
import { DeviceLostError, Gpu, type AdapterSummary } from '../gpu/index.ts';
import { OP_CHECKS, runSelfTest, selfTestPassed, type SelfTestReport } from '../ops/selftest.ts';
import { explainError, type Problem } from './problems.ts';

/**
 * App state. The GPU page's life cycle: detecting → ready (self-test runs) | unavailable | error;
 * ready → lost when the device goes away, and back to detecting on "Reconnect GPU".
 */
export type GpuPhase = 'idle' | 'detecting' | 'ready' | 'lost' | 'unavailable' | 'error';
export type SelfTestStatus = 'idle' | 'running' | 'done' | 'aborted';

export interface SelfTestState {
  status: SelfTestStatus;
  /** Ops finished / ops to run. */
  done: number;
  total: number;
  /** The op running now. */
  current?: string;
  reports: SelfTestReport[];
  /** Wall-clock time of the whole run. */
  ms: number;
  passed?: boolean;
  /** Bumped by every run (and every reconnect) so a stale run cannot overwrite a newer one. */
  runId: number;
}

export interface AppState {
  phase: GpuPhase;
  gpu?: Gpu;
  adapter?: AdapterSummary;
  problem?: Problem;
  selfTest: SelfTestState;
  /** Detects WebGPU, creates the device and runs the self-test. Replaces any previous device. */
  connect(): Promise<void>;
  /** Runs the kernel self-test ('small' shapes) on the current device. */
  runSelfTest(): Promise<void>;
}

export const registeredOps: readonly string[] = OP_CHECKS.map(([name]) => name);

function idleSelfTest(runId: number): SelfTestState {
  return { status: 'idle', done: 0, total: OP_CHECKS.length, reports: [], ms: 0, runId };
}

export const useAppStore = create<AppState>()((set, get) => ({
  phase: 'idle',
  selfTest: idleSelfTest(0),

  async connect() {
    if (get().phase === 'detecting') return;
    const old = get().gpu;
    set((s) => ({
      phase: 'detecting',
      gpu: undefined,
      adapter: undefined,
      problem: undefined,
      selfTest: idleSelfTest(s.selfTest.runId + 1),
    }));
    if (old && !old.isLost) old.destroy();
    let gpu: Gpu;
    try {
      gpu = await Gpu.create();
    } catch (e) {
      const problem = explainError(e);
      set({ phase: problem.kind === 'unavailable' ? 'unavailable' : 'error', problem });
      return;
    }
    gpu.onLost((reason) => {
      if (get().gpu !== gpu) return; // a device we replaced on purpose
      set((s) => ({
        phase: 'lost',
        problem: explainError(new DeviceLostError(reason)),
        selfTest:
          s.selfTest.status === 'running' ? { ...s.selfTest, status: 'aborted', current: undefined } : s.selfTest,
      }));
    });
    set({ phase: 'ready', gpu, adapter: gpu.adapter });
    await get().runSelfTest();
  },

  async runSelfTest() {
    const { gpu, selfTest } = get();
    if (!gpu || gpu.isLost || selfTest.status === 'running') return;
    const runId = selfTest.runId + 1;
    const stale = () => get().selfTest.runId !== runId || get().gpu !== gpu;
    set({
      selfTest: {
        status: 'running',
        done: 0,
        total: OP_CHECKS.length,
        current: OP_CHECKS[0]?.[0],
        reports: [],
        ms: 0,
        runId,
      },
    });
    const t0 = performance.now();
    let reports: SelfTestReport[];
    try {
      reports = await runSelfTest(gpu, 'small', (done, total, report) => {
        if (stale()) return;
        set((s) => ({
          selfTest: {
            ...s.selfTest,
            done,
            total,
            current: OP_CHECKS[done]?.[0],
            reports: [...s.selfTest.reports, report],
          },
        }));
      });
    } catch (e) {
      // runSelfTest reports each op's failure itself; this is only reached if the harness breaks.
      if (!stale())
        set({
          phase: 'error',
          problem: explainError(e),
          selfTest: { ...get().selfTest, status: 'aborted', current: undefined },
        });
      return;
    }
    if (stale()) return;
    const ms = performance.now() - t0;
    const status: SelfTestStatus = gpu.isLost ? 'aborted' : 'done';
    set((s) => ({
      selfTest: { ...s.selfTest, status, reports, ms, current: undefined, passed: selfTestPassed(reports) },
    }));
  },
}));
