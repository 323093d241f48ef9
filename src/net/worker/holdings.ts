/**
 * The stage states a worker holds for one model: its assigned stage, and briefly the one it left (the peer
 * taking it may still fetch it, until the first step of the new round), with what it told the others when it
 * last paused — and the durable snapshots it keeps of the model's stages (src/net/snapshots.ts), which it
 * announces and serves like live states.
 */
import type { HeldStage } from '../held-stage.ts';
import { MAX_HELD, type HeldInfo } from '../swarm-sync.ts';
import { snapshotName, type SnapshotInfo, type SnapshotStore } from '../snapshots.ts';

export class Holdings {
  private states: HeldStage[] = [];
  private model = '';
  /** Hash of the model's RunSpec: snapshots written under another spec (the id re-proposed) are not this model's. */
  private specHash = '';
  private readonly snapshots?: SnapshotStore;
  /** Frozen when the worker paused for a new pipeline: what it holds and the steps the coordinator had recorded. */
  announced: { held: HeldInfo[]; reported: number } = { held: [], reported: 0 };

  constructor(snapshots?: SnapshotStore) {
    this.snapshots = snapshots;
  }

  /** States of another model (or another spec under the same id) are dropped: a peer trains one model at a time. */
  forModel(model: string, specHash: string): void {
    if (this.model === model && this.specHash === specHash) return;
    this.destroyAll();
    this.model = model;
    this.specHash = specHash;
  }

  /** Freezes what this worker announces while the pipeline agrees where to resume: live states, then snapshots. */
  async freeze(reported: number, log: (line: string) => void): Promise<void> {
    const stored = (await this.stored(log)).map((x) => ({ stage: x.stage, step: x.step, backup: false, stored: true }));
    this.announced = { held: [...this.info, ...stored].slice(0, MAX_HELD), reported };
  }

  /** This model's snapshots on durable storage (written under its spec), newest first. */
  async stored(log: (line: string) => void): Promise<SnapshotInfo[]> {
    if (!this.snapshots) return [];
    try {
      return (await this.snapshots.list(this.model)).filter((x) => x.specHash === this.specHash);
    } catch (e) {
      log(`snapshots in ${this.snapshots.where} cannot be listed (${(e as Error).message}); announcing none`);
      return [];
    }
  }

  /** A snapshot's checkpoint of this model (undefined: none, or unusable — said in the log). */
  async snapshot(stage: number, step: number, log: (line: string) => void): Promise<Uint8Array | undefined> {
    if (!this.snapshots) return undefined;
    const key = { model: this.model, stage, step };
    const info = (await this.stored(log)).find((x) => x.stage === stage && x.step === step);
    if (!info) return undefined;
    try {
      return await this.snapshots.get(key);
    } catch (e) {
      log(`snapshot ${snapshotName(key)} is unusable (${(e as Error).message}); removed`);
      await this.snapshots.remove(key).catch(() => {});
      return undefined;
    }
  }

  /** Writes the stage's current state as a snapshot (a failed write is logged: training goes on without it). */
  async persist(held: HeldStage, log: (line: string) => void): Promise<void> {
    if (!this.snapshots) return;
    const key = { model: this.model, stage: held.index, step: held.step, specHash: this.specHash };
    try {
      const info = await this.snapshots.put(key, await held.checkpoint());
      log(`snapshot ${snapshotName(key)} written (${info.bytes} bytes, sha256 ${info.sha256.slice(0, 12)}…)`);
    } catch (e) {
      log(`snapshot ${snapshotName(key)} NOT written: ${(e as Error).message}`);
    }
  }

  get info(): HeldInfo[] {
    return this.states.map((h) => h.info);
  }

  find(stage: number): HeldStage | undefined {
    return this.states.find((h) => h.index === stage);
  }

  add(held: HeldStage): void {
    this.states.push(held);
  }

  /** Brings every state to `step`: undoes an update applied past it, drops what cannot get there. */
  bringTo(step: number, log: (line: string) => void): void {
    for (const h of [...this.states]) {
      if (!h.reaches(step)) {
        log(`dropping stage ${h.index} state at step ${h.step}: it cannot stand at step ${step}`);
        h.destroy();
        this.states.splice(this.states.indexOf(h), 1);
      } else if (h.step !== step) {
        h.rollback();
        log(
          `rolled back stage ${h.index} from step ${step + 1} to ${step}: the update of step ${step} is undone ` +
            `and will be recomputed`,
        );
      }
    }
  }

  /** Everyone of the round has its stage now: a state kept only for others to fetch can go. */
  keepOnly(held: HeldStage, log: (line: string) => void): void {
    for (const h of this.states.filter((x) => x !== held)) {
      h.destroy();
      log(`released stage ${h.index}: this peer now holds only stage ${held.index}`);
    }
    this.states = [held];
  }

  /**
   * The checkpoint a holder serves: of a live state at the step it stands at, never while training; else of a
   * snapshot at that step.
   */
  async checkpoint(model: string, stage: number, step: number, training: boolean, log: (line: string) => void) {
    const h = this.model === model ? this.find(stage) : undefined;
    if (this.model === model && (!h || training || h.step !== step)) {
      const stored = await this.snapshot(stage, step, log);
      if (stored) {
        log(`serving stage ${stage}@${step} of ${model} from its snapshot in ${this.snapshots?.where}`);
        return stored;
      }
    }
    if (!h) return { code: 'not-held' as const, error: `this peer holds no state of stage ${stage} of ${model}` };
    if (training || h.step !== step)
      return {
        code: 'not-ready' as const,
        error: `stage ${stage} stands at step ${h.step}${training ? ' and is training' : ''}, not ${step}`,
      };
    return h.checkpoint();
  }

  destroyAll(): void {
    for (const h of this.states) h.destroy();
    this.states = [];
  }
}
