/**
 * Durable stage snapshots: what a holder keeps of its stage so a model survives every holder stopping (a tab
 * closed, `npm start` stopped, SIGKILL). A snapshot is the stage checkpoint file (src/model/checkpoint.ts:
 * weights, AdamW moments, optimizer step, content hash) at a training step, plus the hash of the RunSpec it was
 * trained under, so a model re-proposed under the same id never resumes from another model's weights.
 *
 * Every stage snapshots at the same steps (every `spec.snapshotEvery` steps, and on a graceful leave), so the
 * newest step for which every stage has a snapshot somewhere is a consistent resume point (src/net/resume.ts).
 *
 * Stores: a Node worker's state folder (snapshot-files.ts), a tab's Origin Private File System or IndexedDB
 * (src/app/volunteer/snapshot-browser.ts). Writes are atomic (a torn write leaves the previous snapshot); reads
 * check the content hash and report a bad entry instead of returning it.
 */
import { TesseraError } from '../errors.ts';

export interface SnapshotKey {
  model: string;
  stage: number;
  /** Training steps applied to the state (the next step it would run). */
  step: number;
}

export interface SnapshotInfo extends SnapshotKey {
  /** SHA-256 (hex) of the RunSpec the state was trained under (specHash). */
  specHash: string;
  /** Size of the checkpoint file. */
  bytes: number;
  /** SHA-256 (hex) of the checkpoint file. */
  sha256: string;
  /** When it was written (ms since the epoch). */
  at: number;
}

/** A snapshot that cannot be used: unreadable, torn, or its content does not match its hash. */
export class SnapshotError extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('snapshot', message, options);
  }
}

export interface SnapshotStore {
  /** Where the snapshots live, in words (for logs and the Volunteer page). */
  readonly where: string;
  /** Snapshots held (all models, or one), newest step first. */
  list(model?: string): Promise<SnapshotInfo[]>;
  /**
   * Writes the checkpoint atomically and keeps only the newest `keep` snapshots of that model and stage.
   * Resolves once the data is durable.
   */
  put(key: SnapshotKey & { specHash: string }, data: Uint8Array): Promise<SnapshotInfo>;
  /** The checkpoint, its hash checked (throws SnapshotError on a mismatch); undefined when absent. */
  get(key: SnapshotKey): Promise<Uint8Array | undefined>;
  remove(key: SnapshotKey): Promise<void>;
  /** Removes every snapshot (a volunteer clearing the tab's storage). */
  clear(): Promise<void>;
  /** Storage used. */
  usage(): Promise<{ bytes: number; count: number }>;
}

/**
 * Snapshots kept per model and stage: the newest may be ahead of what another stage managed to write before a
 * crash, so the ones before stay until a newer step is common to every stage.
 */
export const SNAPSHOTS_KEPT = 3;

/** SHA-256 (hex) of a JSON value with its object keys sorted: the same RunSpec hashes the same everywhere. */
export async function specHash(spec: unknown): Promise<string> {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  const bytes = new TextEncoder().encode(JSON.stringify(canonical(spec)));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Names a snapshot in logs: `stage 2@40 of m1`. */
export const snapshotName = (k: SnapshotKey): string => `stage ${k.stage}@${k.step} of ${k.model}`;
