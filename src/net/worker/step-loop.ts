/**
 * The step loop of one round: step after step through the round's StageRunner (forward, backward, norm
 * exchange, update: src/train/stage-runner.ts) until the step target, stop(), or a failure. Around each step:
 * the HeldStage copies the state at its start and keeps it as backup once the update is applied; replica 0 of
 * the last stage gathers the other replicas' micro-batch losses and reports the step's mean to the coordinator.
 */
import type { Libp2p } from 'libp2p';
import type { GpuTurns } from '../../gpu/gpu-turns.ts';
import { learningRate, recipeMicroBatches } from '../../train/recipe.ts';
import { tokensPerStep } from '../../train/run-derived.ts';
import { CoordinatorError, type CoordinatorClient } from '../coordinator-client.ts';
import { short, sleep } from '../rendezvous.ts';
import { sendLosses, type LossInbox, type LossesRequest } from '../swarm-sync.ts';
import type { Holdings } from './holdings.ts';
import type { SwarmWorkerOptions } from './options.ts';
import type { PhaseDriver } from './phase-driver.ts';
import type { Round } from './round.ts';

export interface StepLoopDeps {
  opts: Pick<SwarmWorkerOptions, 'untilStep' | 'maxSteps' | 'timeoutMs' | 'onStep' | 'onUpdateApplied'>;
  node: Libp2p;
  client: CoordinatorClient;
  peerId: string;
  log: (line: string) => void;
  turns: GpuTurns;
  phases: PhaseDriver;
  holdings: Holdings;
  losses: LossInbox;
  /** The training steps this worker's stage has applied, whenever that changes. */
  applied: (step: number) => void;
}

export class StepLoop {
  private readonly d: StepLoopDeps;
  /** The step this worker started at (maxSteps counts from it, across rounds). */
  private firstStep?: number;

  constructor(d: StepLoopDeps) {
    this.d = d;
  }

  /** Trains until the step target (true), stop() (false), or a failure (throws; the caller reconfigures). */
  async train(c: Round, signal: AbortSignal): Promise<boolean> {
    const { opts, phases } = this.d;
    const { spec, runner, held, assignment: a } = c;
    const micros = spec.microBatches;
    const last = a.stage === a.stages - 1;
    const reporter = last && c.seat.replica === 0;
    const reporterPeer = c.roster.peerAt(a.stages - 1, 0)!;
    this.firstStep ??= held.step;
    const end = Math.min(
      opts.untilStep ?? Infinity,
      opts.maxSteps === undefined ? Infinity : this.firstStep + opts.maxSteps,
    );
    const lossSends = new Set<Promise<void>>();
    let firstOfRound = true;
    while (!phases.stopped && held.step < end) {
      if (phases.state.paused) {
        this.d.turns.pause();
        await phases.until((s) => !s.paused || s.phase === 'stopped', signal);
      }
      if (phases.stopped) break;
      const step = held.step;
      const t0 = performance.now();
      const micro = recipeMicroBatches(c.sampler, spec, step);
      held.begin();
      let own = new Map<number, number>();
      try {
        phases.advance({ type: 'step-started' }, signal);
        await runner.run({
          base: step,
          steps: [micro],
          batch: spec.batch,
          seq: spec.model.context,
          signal,
          opts: { staleness: 0, correction: 'none', lr: () => learningRate(step, spec) },
          onUpdate: (_k, r) => {
            held.commit();
            own = r.losses;
            opts.onUpdateApplied?.(step);
            if (last && !reporter && r.losses.size > 0) {
              const req: LossesRequest = { type: 'losses', model: c.tag, round: c.round, step, losses: [...r.losses] };
              const sent: Promise<void> = sendLosses(this.d.node, reporterPeer, req)
                .catch((e: Error) => this.d.log(`losses of step ${step} to ${short(reporterPeer)}: ${e.message}`))
                .finally(() => lossSends.delete(sent));
              lossSends.add(sent);
            }
          },
        });
      } catch (e) {
        // As Pipeline.run's failure path: drop in-flight micro-batches and accumulated gradients.
        for (let m = 0; m < micro.length; m++) held.stage.discard(m);
        held.stage.zeroGrads();
        // An update that ran without reaching onUpdate (a GPU failure right after it) still counts as applied.
        const begun = held.optimizerStepAtBegin;
        if (begun !== undefined && held.stage.step !== begun) held.commit();
        else held.abandon();
        if (held.step > step)
          this.d.log(
            `step ${step}: update applied, then the step failed (${(e as Error).message}); kept unless the ` +
              `others roll back`,
          );
        this.d.applied(held.step);
        throw e;
      } finally {
        if (phases.state.stepping) phases.dispatch({ type: 'step-ended' });
      }
      if (held.step !== step + 1) throw new Error(`stage ${held.index}: step ${step} ended without its update`);
      this.d.applied(held.step);
      let loss: number | undefined;
      if (reporter) {
        const all = new Map(own);
        if (all.size < micros)
          for (const [m, x] of await this.d.losses.take(step, micros - own.size, signal, opts.timeoutMs ?? 60_000))
            all.set(m, x);
        let sum = 0;
        for (let m = 0; m < micros; m++) sum += all.get(m)!;
        loss = sum / micros;
        await this.report(a.modelId, step, loss, tokensPerStep(spec), c.roster.replicas);
      }
      if (firstOfRound) {
        this.d.holdings.keepOnly(held, this.d.log);
        firstOfRound = false;
      }
      // Every stage writes at the same steps, after the step's loss is recorded: consistent resume points.
      if (held.step % spec.snapshotEvery === 0) await this.d.holdings.persist(held, this.d.log);
      const t = c.transport.stats;
      opts.onStep?.({ step, loss, ms: performance.now() - t0, bytesSent: t.bytesSent, bytesReceived: t.bytesReceived });
    }
    // The reporter needs this worker's last losses before it can record the last step.
    await Promise.all(lossSends);
    return held.step >= end;
  }

  /**
   * Records a step with the coordinator (a non-finite loss is recorded as a failed step). This is where training
   * pauses through a coordinator outage: the step's update is applied and the next one does not begin until the
   * coordinator has its record (the others of the pipeline wait for this worker's next step); a 4xx is an error.
   */
  private async report(
    modelId: string,
    step: number,
    loss: number,
    tokens: number,
    replicas: readonly number[],
  ): Promise<void> {
    const { client, peerId } = this.d;
    const send = async () => {
      if (Number.isFinite(loss)) {
        // The round's replica counts: what this step's receipts claim, whatever the assignment says by now.
        const r = (await client.reportStep(modelId, { step, loss, tokens, peerId, replicas: [...replicas] })) as {
          duplicate?: boolean;
          step?: { loss?: number };
        };
        if (r.duplicate) this.d.log(`step ${step} was already recorded (loss ${r.step?.loss}; recomputed ${loss})`);
        return;
      }
      await client.reportFailedStep(modelId, step, peerId).catch((e: unknown) => {
        // Already recorded (a recomputed step): nothing left to record.
        if (!(e instanceof CoordinatorError && e.code === 'conflict')) throw e;
      });
      this.d.log(`step ${step} has a non-finite loss (${loss}); recorded as failed`);
    };
    for (let tries = 1; ; tries++) {
      try {
        return await client.untilAnswered(send, { stopped: () => this.d.phases.stopped });
      } catch (e) {
        // Refused because the coordinator swept this peer (silent past its grace): the rejoin its next heartbeat
        // makes takes the seat back, and the report with it, so give that a few seconds before failing the step.
        if (!(e instanceof CoordinatorError && e.code === 'forbidden') || tries >= 5 || this.d.phases.stopped) throw e;
        await sleep(1000);
      }
    }
  }
}
