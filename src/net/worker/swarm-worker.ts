/**
 * A volunteer peer: joins the coordinator, gets one stage of one model, connects to the rest of that model's
 * pipeline over direct WebRTC, and trains its stage step after step through a StageRunner on a NetTransport —
 * the same runner the in-process Pipeline uses, so a swarm computes what one process computes. Browser-safe:
 * the tab and `npm run worker` both run it (the corpus loader is the caller's).
 *
 * Following one training step, from the top:
 *   1. phase.ts — the worker's phases as a state machine (joining → freezing → agreeing → ready → training …);
 *      phase-driver.ts applies its events and owns the one AbortController that ends a phase's work.
 *   2. membership.ts — heartbeats; a heartbeat answer with another layout becomes `layout-changed`, which
 *      abandons the work in flight (this file's loop then configures the new pipeline).
 *   3. reconfigure.ts — freeze what this worker holds, meet the others (src/net/rendezvous.ts), agree where to
 *      resume (src/net/resume.ts), take the stage (holdings.ts, stage-source.ts), and open the round.
 *   4. round.ts — the immutable round: roster (roster.ts), HeldStage, the round's NetTransport and the
 *      StageRunner over it.
 *   5. step-loop.ts — per step: HeldStage.begin, StageRunner.run (src/train/stage-runner.ts: forward, backward,
 *      norm exchange, update), HeldStage.commit in onUpdate, the loss report, onStep.
 * Churn and the resume rule: src/net/CHURN.md.
 */
import { GpuTurns, checkDutyCycle, checkInferenceShare } from '../../gpu/gpu-turns.ts';
import type { Stage } from '../../model/stage.ts';
import type { Corpus } from '../../train/recipe.ts';
import type { AuditOptions } from '../../train/work.ts';
import { awaitReady, short, sleep } from '../rendezvous.ts';
import { layoutKey } from '../resume.ts';
import { StageServer } from '../stage-transfer.ts';
import {
  LossInbox,
  MAX_HELD,
  SyncServer,
  type LossesRequest,
  type Phase,
  type Resume,
  type StatusRequest,
  type SyncStatus,
} from '../swarm-sync.ts';
import { Holdings } from './holdings.ts';
import { Membership, layoutOf, trainable, waitingFor, type LayoutChanged } from './membership.ts';
import { defaultAudit, type SwarmWorkerOptions } from './options.ts';
import { PhaseDriver } from './phase-driver.ts';
import { reconfigure, type ReconfigureDeps } from './reconfigure.ts';
import type { Round } from './round.ts';
import { StepLoop } from './step-loop.ts';
import { transientError, type Assignment } from '../coordinator-client.ts';

export class SwarmWorker {
  readonly opts: SwarmWorkerOptions;
  private readonly audit: AuditOptions;
  readonly peerId: string;
  /** Training steps this worker's stage has applied (the next step it runs). */
  step = 0;
  /**
   * This peer's device: training units take turns on it with inference requests (hand the same GpuTurns to
   * the InferenceServer), under the inference priority and the duty cycle.
   */
  readonly turns: GpuTurns;
  private readonly phases = new PhaseDriver();
  private readonly membership: Membership;
  private readonly holdings: Holdings;
  /** run()'s training loop while it runs (leave() waits for the step in flight to end). */
  private looping?: Promise<void>;
  /** Set while this peer hands its stage off after a graceful leave: who is assigned which stage now. */
  private handoff?: { modelId: string; stageOf: Map<string, number> };
  /** Stages the model waits for (paused: no holder or snapshot of them among the pipeline's peers); [] otherwise. */
  private waitingFor: number[] = [];
  private readonly losses = new LossInbox();
  private readonly steps: StepLoop;
  /** The round configured last (kept through a failure's back-off; cleared when the next configuration begins). */
  private round?: Round;
  private resumeAt?: Resume;
  private sync?: SyncServer;
  private stages?: StageServer;
  private corpus?: { vocab: number; data: Promise<Corpus> };

  constructor(opts: SwarmWorkerOptions) {
    this.opts = opts;
    this.turns = new GpuTurns({ inferenceShare: opts.inferencePriority ?? 0.5, dutyCycle: opts.dutyCycle ?? 1 });
    this.audit = opts.audit ?? defaultAudit();
    this.peerId = opts.node.peerId.toString();
    this.holdings = new Holdings(opts.snapshots);
    const log = (line: string) => this.log(line);
    this.membership = new Membership({
      client: opts.client,
      node: opts.node,
      peerId: this.peerId,
      tokensPerSecond: opts.tokensPerSecond,
      kind: opts.kind,
      log,
      progress: () => ({
        step: this.step,
        round: this.phases.state.round,
        transport: this.round?.transport,
        waitingFor: this.waitingFor,
      }),
      onChange: (e) => this.layoutChanged(e),
    });
    this.steps = new StepLoop({
      opts,
      node: opts.node,
      client: opts.client,
      peerId: this.peerId,
      log,
      turns: this.turns,
      phases: this.phases,
      holdings: this.holdings,
      losses: this.losses,
      applied: (step) => (this.step = step),
    });
  }

  private log(line: string): void {
    (this.opts.log ?? console.log)(`[worker ${short(this.peerId)}] ${line}`);
  }

  /**
   * After run() has reached its step target: keep heartbeating so the stage stays this peer's (it goes on
   * serving inference with it) until close().
   */
  keepAlive(): void {
    if (this.phases.stopped) return;
    this.membership.start();
  }

  /** The stage this worker holds now and where it sits (round, replica): what it serves inference for. */
  heldStage(): { modelId: string; stage: Stage; round: number; replica: number; replicas: number } | null {
    const c = this.round;
    return c && !this.phases.stopped
      ? {
          modelId: c.assignment.modelId,
          stage: c.held.stage,
          round: c.round,
          replica: c.seat.replica,
          replicas: c.roster.replicas[c.assignment.stage],
        }
      : null;
  }

  /** What this worker is doing now (for UIs): its phase and the round of its pipeline configuration. */
  get state(): { phase: Phase; round: number; stage?: number } {
    const s = this.phases.state;
    return { phase: s.wire, round: s.round, stage: this.round?.assignment.stage };
  }

  /** Joins, waits for a stage, connects and trains until stop(), maxSteps or untilStep, riding out pipeline changes. */
  async run(): Promise<void> {
    const answer = await this.membership.settle(
      () => this.phases.stopped,
      // Encoding the corpus holds the event loop for a second or more at a time: start it now, while nothing
      // waits on this worker (one whose heartbeats stall for 3 beats is declared gone).
      (a) => void (a.status === 'assigned' && this.loadCorpus(a.assignment.spec.model.vocab).catch(() => {})),
    );
    if (!answer) return;
    if (answer.status === 'assigned') await this.loadCorpus(answer.assignment.spec.model.vocab);
    this.sync = new SyncServer({
      node: this.opts.node,
      handler: { status: (from, req) => this.statusFor(from, req), losses: (from, req) => this.takeLosses(from, req) },
      log: (m) => this.log(`warning: ${m}`),
    });
    this.stages = new StageServer({
      node: this.opts.node,
      log: { info: (m) => this.log(m), warn: (m) => this.log(`warning: ${m}`) },
      source: {
        assignedStage: (model, peer) =>
          this.handoff?.modelId === model ? this.handoff.stageOf.get(peer) : this.membership.assignedStage(model, peer),
        checkpoint: (model, stage, step) =>
          this.holdings.checkpoint(
            model,
            stage,
            step,
            this.phases.state.wire === 'training' && !this.phases.stopped,
            (m) => this.log(m),
          ),
      },
    });
    await this.sync.start();
    await this.stages.start();
    this.membership.start();
    this.looping = this.loop();
    try {
      await this.looping;
    } finally {
      this.membership.stop();
    }
  }

  /** One configuration per pass: wait for a trainable pipeline, or configure it and train until it ends. */
  private async loop(): Promise<void> {
    let failures = 0;
    let failedAt = -1;
    const { client } = this.opts;
    let outagesSeen = client.outages;
    while (!this.phases.stopped) {
      const answer = this.membership.latest!;
      const a = trainable(answer);
      this.endRound();
      if (!a) {
        this.phases.dispatch({ type: 'wait', layout: layoutOf(answer) });
        this.log(waitingFor(answer));
        await this.phases.until((s) => s.phase !== 'idle');
        continue;
      }
      this.losses.clear();
      this.phases.dispatch({ type: 'configure', layout: layoutKey(a) });
      const signal = this.phases.signal;
      try {
        const round = await this.configure(a, signal);
        if (await this.steps.train(round, signal)) {
          this.phases.dispatch({ type: 'target-reached' });
          return;
        }
      } catch (e) {
        if (this.phases.stopped) return;
        this.round?.close();
        if (this.phases.state.phase === 'abandoned') {
          this.log(`pipeline changed (${String(signal.reason?.message ?? signal.reason)}): reconfiguring`);
          continue;
        }
        this.phases.dispatch({ type: 'failed' });
        // A failure while the coordinator is unreachable, or the first one after an outage (a neighbour stalled
        // on its loss report past the receive timeout), is the outage's: waited out, never counted towards the
        // give-up (reconfiguring waits for the coordinator anyway).
        const outage = transientError(e) || client.down !== null || client.outages !== outagesSeen;
        outagesSeen = client.outages;
        failures = outage ? 0 : failedAt === this.step ? failures + 1 : 1;
        failedAt = this.step;
        if (failures > 5) throw e;
        this.log(
          outage
            ? `step ${this.step} failed around a coordinator outage (${(e as Error).message}); reconfiguring`
            : `step ${this.step} failed (${(e as Error).message}); reconfiguring (attempt ${failures} of 5)`,
        );
        await sleep(this.membership.heartbeatMs);
      }
    }
  }

  /** The reconfiguration step, then ready: says so to the others and waits until all of them are. */
  private async configure(a: Assignment, signal: AbortSignal): Promise<Round> {
    const { round, rendezvous } = await reconfigure(this.reconfigureDeps(), a, signal);
    this.round = round;
    this.step = round.held.step;
    this.resumeAt = round.resume;
    this.phases.advance({ type: 'configured', round: round.round }, signal);
    await awaitReady(rendezvous, a.modelId, round.round);
    this.phases.advance({ type: 'all-ready' }, signal);
    this.log(
      `round ${round.round}: training from step ${round.resume.step} with ${rendezvous.members.length} other worker(s)`,
    );
    return round;
  }

  private reconfigureDeps(): ReconfigureDeps {
    const o = this.opts;
    return {
      gpu: o.gpu,
      node: o.node,
      relayAddr: o.relayAddr,
      client: o.client,
      peerId: this.peerId,
      log: (line) => this.log(line),
      loadCorpus: (vocab) => this.loadCorpus(vocab),
      audit: this.audit,
      turns: this.turns,
      timeoutMs: o.timeoutMs,
      onWork: o.onWork,
      corrupt: o.corrupt,
      holdings: this.holdings,
      phases: this.phases,
      onWaiting: (stages) => (this.waitingFor = stages),
    };
  }

  /** A new configuration begins (or none can): the last round's transport goes, and so does its resume point. */
  private endRound(): void {
    this.round?.close();
    this.round = undefined;
    this.resumeAt = undefined;
  }

  private loadCorpus(vocab: number): Promise<Corpus> {
    if (this.corpus?.vocab !== vocab) this.corpus = { vocab, data: this.opts.loadCorpus(vocab) };
    return this.corpus.data;
  }

  /** A heartbeat answer with another layout: the work in flight is for a pipeline that no longer exists. */
  private layoutChanged(e: LayoutChanged): void {
    const a = e.answer;
    const listed = (p: string) =>
      a.status === 'assigned' && a.assignment.pipeline.some((s) => s.peers.some((x) => x.peerId === p));
    const gone = (this.round?.roster.peers ?? []).filter((p) => !listed(p));
    const reason = gone.length ? `${gone.map(short).join(', ')} left it` : 'new layout';
    this.phases.dispatch({ type: 'layout-changed', layout: e.layout, reason });
  }

  // ---- what other workers ask ---------------------------------------------------------------------

  private statusFor(from: string, req: StatusRequest): SyncStatus {
    const s = this.phases.state;
    // A worker of this round is agreeing on a resume again: the step in flight cannot finish without it. (Only
    // a member counts: anyone else asking must not be able to stall training.)
    if (req.phase === 'paused' && this.round?.roster.seatOf(from))
      this.phases.dispatch({
        type: 'member-paused',
        layout: req.layout,
        round: req.round,
        reason: `${short(from)} left round ${s.round}`,
      });
    const mine = !this.handoff && (s.wire === 'ready' || s.wire === 'training');
    // Paused, or handing off after a leave: what was frozen (live states and snapshots) is what counts.
    const frozen = s.wire === 'paused' || this.handoff !== undefined;
    return {
      layout: s.layout,
      phase: this.handoff ? 'paused' : s.wire,
      round: s.round,
      reported: this.holdings.announced.reported,
      // Snapshots on disk stay sources whatever the phase: a peer that adopts a decided resume reads them here.
      held: frozen
        ? this.holdings.announced.held
        : [...this.holdings.info, ...this.holdings.announced.held.filter((h) => h.stored)].slice(0, MAX_HELD),
      resume: mine ? this.resumeAt : undefined,
    };
  }

  private takeLosses(from: string, req: LossesRequest): void {
    const c = this.round;
    const { wire } = this.phases.state;
    if (!c || (wire !== 'training' && wire !== 'ready')) throw new Error('not training');
    if (req.model !== c.tag || req.round !== c.round)
      throw new Error(`losses for ${req.model} round ${req.round}, this worker trains ${c.tag}`);
    const last = c.assignment.stages - 1;
    if (c.assignment.stage !== last || c.seat.replica !== 0) throw new Error('this worker does not report losses');
    const w = c.roster.seatOf(from);
    if (!w || w.stage !== last || w.replica === 0) throw new Error(`${from} is not a replica of the last stage`);
    if (req.step < c.held.step - 1 || req.step > c.held.step + 1)
      throw new Error(`step ${req.step} is outside [${c.held.step - 1}, ${c.held.step + 1}]`);
    const R = c.roster.replicas[last];
    for (const [m] of req.losses)
      if (m >= c.spec.microBatches || m % R !== w.replica)
        throw new Error(`micro-batch ${m} is not replica ${w.replica}'s`);
    this.losses.put(req.step, req.losses);
  }

  // ---- the volunteer's controls --------------------------------------------------------------------

  /**
   * Finishes the step in flight, then holds before the next one until resume(). Heartbeats go on and the
   * stage stays held; the rest of the pipeline waits (and, past its receive timeout, reconfigures with this
   * worker, which then holds again).
   */
  pause(): void {
    this.phases.dispatch({ type: 'pause' });
    // The device stops too (inference included: a hidden tab or a laptop on battery computes nothing), at once
    // between steps, else once the step in flight has finished.
    if (!this.phases.state.stepping) this.turns.pause();
  }

  resume(): void {
    this.phases.dispatch({ type: 'resume' });
    this.turns.resume();
  }

  /** GPU-use cap in (0, 1]: from the next turn on, the device rests t·(1 − d)/d ms after a turn of t ms. */
  setDutyCycle(d: number): void {
    this.turns.dutyCycle = checkDutyCycle(d);
  }

  /** Share of the device's turns inference gets while training also waits, in [0, 1]. */
  setInferencePriority(p: number): void {
    this.turns.inferenceShare = checkInferenceShare(p);
  }

  stop(): void {
    this.phases.dispatch({ type: 'stop' });
  }

  /**
   * Leaves gracefully (a tab's Leave, SIGTERM): finishes with the step in flight, writes the stage to durable
   * storage — at its step and, when it kept one, at the step before, so every stage of a pipeline stopped at once
   * (the stages stand at most one step apart) has a snapshot at one common step — then leaves the pipeline with a
   * hand-off: for up to `handoffMs` it stays reachable and serves its stage to the peers now assigned it, until
   * the pipeline has trained a step without it (`handoffMs` 0: no hand-off, e.g. every worker stops at a step
   * target together). Then close().
   */
  async leave(opts: { handoffMs?: number } = {}): Promise<void> {
    const c = this.round;
    this.stop();
    await this.looping?.catch(() => {});
    const held = c?.held;
    if (c && held && this.holdings.find(held.index) === held) {
      await this.holdings.persist(held, (l) => this.log(l));
      if (held.hasBackup) {
        held.rollback();
        await this.holdings.persist(held, (l) => this.log(l));
      }
      try {
        const ms = opts.handoffMs ?? 60_000;
        if (ms > 0) await this.handOff(c.assignment.modelId, held.index, ms);
      } catch (e) {
        this.log(`hand-off ended: ${(e as Error).message}`);
      }
    }
    await this.close();
  }

  /** The hand-off of a graceful leave (see leave()); returns once it is no longer needed or its time is up. */
  private async handOff(modelId: string, stage: number, ms: number): Promise<void> {
    const { client } = this.opts;
    const before = (await client.model(modelId)).model.steps;
    const recorded = before.done + before.failed;
    await this.holdings.freeze(recorded, (l) => this.log(l));
    const stageOf = new Map<string, number>();
    this.handoff = { modelId, stageOf };
    const answer = await client.leave(this.peerId, { handoff: true });
    // Nobody took the stage (every peer is leaving, or none is free): waiting would serve no one.
    if (!answer.handoff?.successors.length) return;
    const end = Math.min(answer.handoff.until, Date.now() + ms);
    this.log(
      `handing stage ${stage} of ${modelId} off to ${answer.handoff.successors.map(short).join(', ')} ` +
        `(staying reachable for up to ${Math.round((end - Date.now()) / 1000)} s)`,
    );
    this.membership.start();
    const served = this.stages?.stats.served ?? 0;
    while (Date.now() < end) {
      const { model } = await client.model(modelId);
      stageOf.clear();
      for (const st of model.stages) for (const p of st.peers) stageOf.set(p.peerId, st.index);
      // The pipeline trains again without this peer: nothing more is needed from it.
      if (model.steps.done + model.steps.failed > recorded + 1) {
        this.log(
          `hand-off done: the pipeline trained on without this peer (stage served ${
            (this.stages?.stats.served ?? 0) - served
          } time(s))`,
        );
        return;
      }
      await sleep(500);
    }
    this.log(`hand-off window of stage ${stage} ended`);
  }

  /** Leaves the swarm and frees the stage. */
  async close(): Promise<void> {
    this.stop();
    this.membership.stop();
    try {
      await this.opts.client.leave(this.peerId);
    } catch (e) {
      this.log(`leave failed: ${(e as Error).message}`);
    }
    this.round?.close();
    this.round = undefined;
    await this.sync?.stop().catch(() => {});
    await this.stages?.stop().catch(() => {});
    this.holdings.destroyAll();
  }
}
