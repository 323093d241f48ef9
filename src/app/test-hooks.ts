import type { AdapterSummary } from '../gpu/index.ts';
import type { SelfTestReport } from '../ops/selftest.ts';
import type { GpuPhase, SelfTestStatus } from './store.ts';
import type { BrowserSnapshots, SnapshotBackend } from './volunteer/snapshot-browser.ts';
import type { StageInfo, VolunteerStatus } from './volunteer/store.ts';

/**
 * What the page publishes on `window.__tesseraSelfTest` so automated checks (the Playwright suite, a
 * person in the devtools console) can read the self-test's structured results instead of scraping the UI.
 */
export interface SelfTestHook {
  phase: GpuPhase;
  status: SelfTestStatus;
  /** True once a run finished (passed or not). */
  finished: boolean;
  passed: boolean;
  /** Names of the registered op checks (src/ops/selftest.ts OP_CHECKS), in run order. */
  ops: string[];
  reports: SelfTestReport[];
  adapter?: AdapterSummary;
  ms: number;
}

/** The Volunteer page's state on `window.__tesseraVolunteer`, for the same readers. */
export interface VolunteerHook {
  status: VolunteerStatus;
  detail: string;
  error?: string;
  peerId?: string;
  assignment?: StageInfo;
  stepsDone: number;
  lastStep?: number;
  peers: number;
  bytesSent: number;
  bytesReceived: number;
}

declare global {
  interface Window {
    __tesseraSelfTest?: SelfTestHook;
    __tesseraVolunteer?: VolunteerHook;
    /** The tab's stage-snapshot store (OPFS, else IndexedDB; `backend` forces one). */
    __tesseraSnapshots?: (backend?: SnapshotBackend) => Promise<BrowserSnapshots>;
  }
}
