/**
 * A stage a swarm worker holds, with the training step it stands at and a copy of its state from before its
 * last applied update, so the update can be undone when another stage of the pipeline never applied it
 * (src/net/resume.ts decides when).
 *
 * The update is the only thing a step changes in weights and AdamW moments, so the state at a step's start is
 * the state before its update. But that copy may only replace the backup once the update is applied: a worker
 * that applied step k and already started step k + 1 must still be able to undo k (another stage may be stuck
 * before its update of k). Two copy sets on the GPU therefore alternate: `begin` copies the state into the set
 * not holding the backup, `commit` (update applied) makes it the backup, `abandon` (step failed before its
 * update) drops it. Memory: twice the stage's weights and moments.
 */
import type { Tensor } from '../gpu/index.ts';
import { saveStage } from '../model/checkpoint.ts';
import type { Stage } from '../model/stage.ts';
import type { HeldInfo } from './swarm-sync.ts';

type CopySet = Map<string, { param: Tensor; m: Tensor; v: Tensor }>;

interface Copy {
  set: CopySet;
  /** Training step and optimizer step the copy stands at. */
  step: number;
  optimizerStep: number;
}

export class HeldStage {
  readonly stage: Stage;
  /** Training steps applied to this state (the next step to run). */
  step: number;
  private readonly sets: CopySet[] = [];
  private backup?: Copy;
  private pending?: Copy;
  private cached?: { step: number; bytes: Promise<Uint8Array> };

  constructor(stage: Stage, step: number) {
    this.stage = stage;
    this.step = step;
  }

  get index(): number {
    return this.stage.spec.index;
  }

  /** A copy from before the last update exists: one step back is reachable. */
  get hasBackup(): boolean {
    return this.backup !== undefined && this.backup.step === this.step - 1;
  }

  get info(): HeldInfo {
    return { stage: this.index, step: this.step, backup: this.hasBackup };
  }

  /** Whether this state can stand at `step` (now, or by undoing its last update). */
  reaches(step: number): boolean {
    return step === this.step || (step === this.step - 1 && this.hasBackup);
  }

  /** Optimizer steps the stage stood at when the step in flight began (undefined: none in flight). */
  get optimizerStepAtBegin(): number | undefined {
    return this.pending?.optimizerStep;
  }

  private allocate(): CopySet {
    const { gpu } = this.stage;
    return new Map(
      [...this.stage.slots].map(([name, s]) => [
        name,
        {
          param: gpu.empty(s.param.shape, 'f32', `copy.${name}`),
          m: gpu.empty(s.m.shape, 'f32', `copy.m.${name}`),
          v: gpu.empty(s.v.shape, 'f32', `copy.v.${name}`),
        },
      ]),
    );
  }

  /** A step begins: copies weights and moments (the state before its update) into the set the backup does not use. */
  begin(): void {
    const { gpu } = this.stage;
    while (this.sets.length < 2) this.sets.push(this.allocate());
    const set = this.sets.find((x) => x !== this.backup?.set)!;
    for (const [name, s] of this.stage.slots) {
      const c = set.get(name)!;
      gpu.copy(s.param, c.param);
      gpu.copy(s.m, c.m);
      gpu.copy(s.v, c.v);
    }
    this.pending = { set, step: this.step, optimizerStep: this.stage.step };
    this.cached = undefined;
  }

  /** The step's update was applied (or refused everywhere): the copy from its start becomes the backup. */
  commit(): void {
    if (!this.pending) throw new Error(`stage ${this.index}: commit without a step in flight`);
    this.backup = this.pending;
    this.pending = undefined;
    this.step = this.backup.step + 1;
    this.cached = undefined;
  }

  /** The step failed before its update: its copy is dropped, the backup of the previous update stays. */
  abandon(): void {
    this.pending = undefined;
  }

  /** Undoes the last update: weights, moments and optimizer step return to the backup. */
  rollback(): void {
    if (!this.hasBackup)
      throw new Error(`stage ${this.index}: no copy from before step ${this.step - 1}'s update to roll back to`);
    const { gpu } = this.stage;
    const b = this.backup!;
    for (const [name, s] of this.stage.slots) {
      const c = b.set.get(name)!;
      gpu.copy(c.param, s.param);
      gpu.copy(c.m, s.m);
      gpu.copy(c.v, s.v);
    }
    this.stage.step = b.optimizerStep;
    this.step = b.step;
    this.backup = undefined;
    this.cached = undefined;
  }

  /** The checkpoint file of the current state (made once per step). */
  checkpoint(): Promise<Uint8Array> {
    if (this.cached?.step !== this.step) this.cached = { step: this.step, bytes: saveStage(this.stage) };
    return this.cached.bytes;
  }

  destroy(): void {
    for (const set of this.sets) for (const c of set.values()) this.stage.gpu.release(c.param, c.m, c.v);
    this.sets.length = 0;
    this.backup = undefined;
    this.pending = undefined;
    this.cached = undefined;
    this.stage.destroy();
  }
}
