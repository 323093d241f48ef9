/**
 * The chaos run's invariants, as pure functions of what the run collected (worker logs, the coordinator's step
 * records and receipts): each returns counts and the offending examples, so the report says what broke where.
 * The log lines parsed here are the worker's own (src/net/worker/reconfigure.ts, holdings.ts, step-loop.ts,
 * src/cli/worker.ts); a line they no longer print makes a check see nothing, so the run also counts the lines
 * it expected and found (a run with faults and no resume line at all is itself a failure).
 */
import type { SignedReceipt } from '../src/ledger/receipt.ts';

/** One run of one worker process, from spawn to exit: its lines in order, each with when it arrived. */
export interface Incarnation {
  worker: string;
  /** 1 for the first process of that worker, 2 after its first restart, … */
  n: number;
  lines: Array<{ at: number; text: string }>;
}

export interface StepAccount {
  /** Step lines whose step the worker's stage had already applied, with no rollback or resume in between. */
  appliedTwice: string[];
  /** Step lines that skipped ahead of the worker's stage (a step never applied there). */
  skipped: string[];
  /** Seeded initialisations after the model had stepped (or at a step above 0): the model reset to the seed. */
  resets: string[];
  /** Resume points agreed ("resume at step k", "resuming as the others decided"). */
  resumes: number;
  /** Rollbacks of one update ("rolled back stage s from step k+1 to k"). */
  rollbacks: number;
  /** Lines about a snapshot being written or resumed from. */
  snapshotLines: number;
  /** "paused — waiting for stage s" lines. */
  pausedLines: number;
  /** Steps applied in all (one line per update). */
  stepLines: number;
}

const STEP = /\] step (\d+)(?: {2}|$)/;
const STEP_FAILED_AFTER_UPDATE = /\] step (\d+): update applied, then the step failed/;
const RESUME = /resume at step (\d+)/;
const ADOPT = /resuming as the others decided: step (\d+)/;
const ROLLBACK = /rolled back stage \d+ from step \d+ to (\d+)/;
const LOADED = /loaded stage \d+ at step (\d+)/;
const SNAPSHOT_RESUME =
  /(?:resum\w*|restor\w*|load\w*) .*snapshot.*step (\d+)|snapshot .*step (\d+).*(?:resum|restor)/i;

/**
 * Follows each incarnation's stage position p (the next step its state would apply): a resume, a rollback or a
 * loaded stage sets it; each applied step must be p, and moves it to p + 1. `firstStepAt` is when the first step
 * anywhere was applied: a seeded initialisation after it is a reset even at step 0.
 */
export function accountSteps(incarnations: Incarnation[]): StepAccount {
  const out: StepAccount = {
    appliedTwice: [],
    skipped: [],
    resets: [],
    resumes: 0,
    rollbacks: 0,
    snapshotLines: 0,
    pausedLines: 0,
    stepLines: 0,
  };
  let firstStepAt = Infinity;
  for (const inc of incarnations)
    for (const l of inc.lines) if (STEP.test(l.text)) firstStepAt = Math.min(firstStepAt, l.at);
  for (const inc of incarnations) {
    let p: number | undefined;
    const where = (text: string) => `${inc.worker}#${inc.n}: ${text.trim()}`;
    for (const { at, text } of inc.lines) {
      if (/snapshot/i.test(text)) out.snapshotLines++;
      if (/paused\W+waiting for stage/i.test(text)) out.pausedLines++;
      const resume = RESUME.exec(text) ?? ADOPT.exec(text);
      if (resume) {
        out.resumes++;
        p = Number(resume[1]);
        if (/seeded initiali[sz]ation/.test(text) && (p > 0 || at > firstStepAt)) out.resets.push(where(text));
        continue;
      }
      const set = ROLLBACK.exec(text) ?? LOADED.exec(text) ?? SNAPSHOT_RESUME.exec(text);
      if (set) {
        if (ROLLBACK.test(text)) out.rollbacks++;
        p = Number(set[1] ?? set[2]);
        continue;
      }
      const step = STEP.exec(text) ?? STEP_FAILED_AFTER_UPDATE.exec(text);
      if (!step) continue;
      out.stepLines++;
      const k = Number(step[1]);
      if (p !== undefined && k < p) out.appliedTwice.push(where(`${text} (stage already at step ${p})`));
      if (p !== undefined && k > p) out.skipped.push(where(`${text} (stage at step ${p})`));
      p = k + 1;
    }
  }
  return out;
}

export interface RecomputedLoss {
  step: number;
  recorded: number;
  recomputed: number;
  relative: number;
}

/** "step k was already recorded (loss a; recomputed b)": a step trained again after a resume, and both losses. */
export function recomputedLosses(incarnations: Incarnation[]): RecomputedLoss[] {
  const out: RecomputedLoss[] = [];
  const re = /step (\d+) was already recorded \(loss ([-\d.e+]+|undefined); recomputed ([-\d.e+]+|NaN)\)/;
  for (const inc of incarnations)
    for (const { text } of inc.lines) {
      const m = re.exec(text);
      if (!m) continue;
      const recorded = Number(m[2]);
      const recomputed = Number(m[3]);
      out.push({
        step: Number(m[1]),
        recorded,
        recomputed,
        relative: Math.abs(recorded - recomputed) / Math.max(Math.abs(recorded), 1e-30),
      });
    }
  return out;
}

/**
 * Receipts the coordinator refused, except its acknowledgement of a retry ("duplicate: already stored"): a receipt
 * of a step already settled, or of a unit another receipt claims, is a refusal like any other.
 */
export function refusedReceipts(incarnations: Incarnation[]): string[] {
  const out: string[] = [];
  for (const inc of incarnations)
    for (const { text } of inc.lines) {
      const batch = /receipts: (\d+) refused \((\d+)\): (.*)/.exec(text);
      const one = /receipt refused: (.*)/.exec(text);
      const reason = batch?.[3] ?? one?.[1];
      if (reason !== undefined && !/duplicate: already stored/i.test(reason))
        out.push(`${inc.worker}#${inc.n}: ${text.trim()}`);
    }
  return out;
}

/**
 * The round whose report recorded each step, from the reporters' lines ("round R: training from step S", then
 * "step k  loss x" once the coordinator has the step; a report answered "already recorded" recorded nothing). A
 * step is trained again after a rollback, by another round: only the recording round's work counts for it.
 */
export function recordingRounds(incarnations: Incarnation[]): Map<number, number> {
  const first = new Map<number, { round: number; at: number }>();
  for (const inc of incarnations) {
    let round: number | undefined;
    const already = new Set<number>();
    for (const { at, text } of inc.lines) {
      const r = /\] round (\d+): training from step \d+/.exec(text);
      if (r) round = Number(r[1]);
      const dup = /\] step (\d+) was already recorded/.exec(text);
      if (dup) already.add(Number(dup[1]));
      const m = /\] step (\d+) {2}loss /.exec(text);
      if (!m || round === undefined) continue;
      const k = Number(m[1]);
      if (already.delete(k)) continue;
      const prior = first.get(k);
      if (!prior || at < prior.at) first.set(k, { round, at });
    }
  }
  return new Map([...first].map(([k, v]) => [k, v.round]));
}

/**
 * Refusals of receipts for work that counted: of the unit a refused line names (stage, step, unit), no receipt of
 * the round that recorded the step was published. (A refused receipt of an attempt that was rolled back and
 * trained again by a later round, or of a step never recorded, is not a loss; one that names no unit, a whole
 * batch refused, always counts.)
 */
export function refusedCounted(
  refused: string[],
  receipts: SignedReceipt[],
  rounds: Map<number, number>,
  recorded: Set<number>,
): string[] {
  const have = new Set(
    receipts.filter((r) => r.kind === 'train').map((r) => `${r.step}/${r.stage}/${r.micro}/${r.round}`),
  );
  return refused.filter((line) => {
    const m = /for stage (\d+) step (\d+) unit (\d+)/.exec(line);
    if (!m) return true;
    if (!recorded.has(Number(m[2]))) return false;
    const round = rounds.get(Number(m[2]));
    return round === undefined || !have.has(`${m[2]}/${m[1]}/${m[3]}/${round}`);
  });
}

export interface StepRecords {
  /** The last step recorded (−1 when none). */
  last: number;
  /** Steps 0..last with no record. */
  lost: number[];
  /** Steps recorded more than once. */
  twice: number[];
  /** Steps where the loss jumped back more than half the way to the first loss (a reset seen in the curve). */
  lossResets: number[];
}

/** Every step from 0 to the last must be recorded exactly once; a jump back toward the initial loss is a reset. */
export function checkStepRecords(train: Array<{ step: number; value: number }>): StepRecords {
  const count = new Map<number, number>();
  for (const m of train) count.set(m.step, (count.get(m.step) ?? 0) + 1);
  const last = train.reduce((a, m) => Math.max(a, m.step), -1);
  const lost: number[] = [];
  for (let s = 0; s <= last; s++) if (!count.has(s)) lost.push(s);
  const twice = [...count].filter(([, n]) => n > 1).map(([s]) => s);
  const loss = new Map(train.map((m) => [m.step, m.value]));
  const first = loss.get(0);
  const lossResets: number[] = [];
  if (first !== undefined) {
    // Single batches are noisy: compare with the best loss of the 20 steps before, once training made real progress.
    const window: number[] = [];
    for (let s = 1; s <= last; s++) {
      const prev = loss.get(s - 1);
      if (prev !== undefined) window.push(prev);
      if (window.length > 20) window.shift();
      const x = loss.get(s);
      if (x === undefined || window.length === 0) continue;
      const best = Math.min(...window);
      const progress = first - best;
      if (progress >= 1 && x - best > progress / 2) lossResets.push(s);
    }
  }
  return { last, lost, twice, lossResets };
}

export interface ReceiptCheck {
  receipts: number;
  /** Receipts published more than once under one identity (the same unit, kind, round and peer): double credit. */
  duplicates: string[];
  /**
   * Training units (step ≤ throughStep, stage, micro-batch) with no train receipt of the round that recorded the
   * step (of any round where that is not known): lost receipts.
   */
  missingUnits: string[];
}

/** The identity of a receipt: what the coordinator must not accept twice. */
export function receiptIdentity(r: SignedReceipt): string {
  return [r.model, r.round, r.stage, r.replica, r.step, r.micro, r.kind, r.peerId].join('/');
}

export function checkReceipts(
  receipts: SignedReceipt[],
  o: { throughStep: number; stages: number; microBatches: number; rounds?: Map<number, number> },
): ReceiptCheck {
  const seen = new Map<string, number>();
  const units = new Set<string>();
  for (const r of receipts) {
    const id = receiptIdentity(r);
    seen.set(id, (seen.get(id) ?? 0) + 1);
    const round = o.rounds?.get(r.step);
    if (r.kind === 'train' && (round === undefined || round === r.round)) units.add(`${r.step}/${r.stage}/${r.micro}`);
  }
  const duplicates = [...seen].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`);
  const missingUnits: string[] = [];
  for (let step = 0; step <= o.throughStep; step++)
    for (let stage = 0; stage < o.stages; stage++)
      for (let micro = 0; micro < o.microBatches; micro++)
        if (!units.has(`${step}/${stage}/${micro}`)) missingUnits.push(`step ${step} stage ${stage} micro ${micro}`);
  return { receipts: receipts.length, duplicates, missingUnits };
}
