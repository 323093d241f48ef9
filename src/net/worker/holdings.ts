/**
 * The stage states a worker holds for one model: its assigned stage, and briefly the one it left (the peer
 * taking it may still fetch it, until the first step of the new round), with what it told the others when it
 * last paused.
 */
import type { HeldStage } from '../held-stage.ts';
import type { HeldInfo } from '../swarm-sync.ts';

export class Holdings {
  private states: HeldStage[] = [];
  private model = '';
  /** Frozen when the worker paused for a new pipeline: what it holds and the steps the coordinator had recorded. */
  announced: { held: HeldInfo[]; reported: number } = { held: [], reported: 0 };

  /** States of another model are dropped: a peer trains one model at a time. */
  forModel(model: string): void {
    if (this.model === model) return;
    this.destroyAll();
    this.model = model;
  }

  freeze(reported: number): void {
    this.announced = { held: this.info, reported };
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

  /** The checkpoint a holder serves: only of a state it holds, at the step it stands at, never while training. */
  async checkpoint(model: string, stage: number, step: number, training: boolean) {
    const h = this.model === model ? this.find(stage) : undefined;
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
