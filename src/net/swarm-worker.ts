/**
 * A volunteer peer: joins the coordinator, gets one stage of one model, connects to the rest of that model's
 * pipeline over direct WebRTC, and trains its stage step after step through a StageRunner on a NetTransport —
 * the same runner the in-process Pipeline uses, so a swarm computes what one process computes. Browser-safe:
 * the tab and `npm run worker` both run it (the corpus loader is the caller's).
 *
 * Churn. When a heartbeat answer shows the pipeline changed (a peer vanished and was declared gone, one
 * joined, the coordinator moved one), the worker aborts the step in flight, drops its in-flight micro-batches
 * and gradients, and reconfigures:
 *   1. pause, and freeze what it reports to the others: the stage states it holds (stage, step, whether it
 *      kept the state from before its last update) and the steps the coordinator has recorded;
 *   2. connect to every worker of the new pipeline and collect their statuses (`/tessera/sync/1.0.0`);
 *   3. decide the resume step with planResume (src/net/resume.ts: the largest step every stage can stand at;
 *      holders ahead roll back their last update, so no step is applied twice or lost), or adopt the decision
 *      of a worker that already made it;
 *   4. take its stage: keep its own state, or fetch the stage's checkpoint at the resume step from a holder
 *      (`/tessera/stage/1.0.0`, checked with readCheckpoint), or — when no peer holds any of the model —
 *      start from the seeded initialisation;
 *   5. set up a fresh tensor transport whose frames carry the new epoch, tell the others it is ready, wait
 *      until all are, and train on from the resume step.
 * A stage whose last holder vanished without a replica cannot be recovered: the worker says so and waits for
 * the pipeline to change again (a peer with that stage may come back).
 */
import type { Libp2p } from 'libp2p';
import type { CodecName } from '../compress/index.ts';
import { BatchSampler } from '../data/batches.ts';
import { checkDutyCycle, checkInferenceShare, GpuTurns } from '../gpu/gpu-turns.ts';
import type { Gpu } from '../gpu/index.ts';
import type { StageCheckpoint } from '../model/checkpoint.ts';
import type { ModelConfig } from '../model/config.ts';
import { sha256Hex } from '../model/safetensors.ts';
import { Stage } from '../model/stage.ts';
import type { StageSpec } from '../model/stages.ts';
import {
  defaultRecipe,
  learningRate,
  recipeAdam,
  recipeBoundaries,
  recipeMicroBatches,
  type Corpus,
  type RecipeOptions,
} from '../train/recipe.ts';
import { StageRunner, workerId, type Topology } from '../train/stage-runner.ts';
import type { Frame } from '../train/transport.ts';
import { secretCoin, type AuditOptions, type WorkContext, type WorkDone } from '../train/work.ts';
import { CoordinatorError, type Assignment, type CoordinatorClient, type JoinAnswer } from './coordinator-client.ts';
import { checkFrame } from './frame-check.ts';
import { FrameError, frameLimitsFor } from './frame-codec.ts';
import { HeldStage } from './held-stage.ts';
import { LinkMeter } from './link-meter.ts';
import { NetTransport, type NetTransportOptions } from './net-transport.ts';
import {
  abortable,
  awaitReady,
  collectStatuses,
  connectAll,
  Reconfigure,
  short,
  sleep,
  type Rendezvous,
} from './rendezvous.ts';
import { layoutKey, planResume, type MemberView } from './resume.ts';
import { fetchStage, StageServer } from './stage-transfer.ts';
import {
  LossInbox,
  sendLosses,
  SyncServer,
  type HeldInfo,
  type LossesRequest,
  type Phase,
  type Resume,
  type StatusRequest,
  type SyncStatus,
} from './swarm-sync.ts';

export interface SwarmWorkerOptions {
  gpu: Gpu;
  node: Libp2p;
  client: CoordinatorClient;
  relayAddr: string;
  kind: 'node' | 'browser';
  /** Measured training throughput of the coordinator's reference workload. */
  tokensPerSecond: number;
  loadCorpus: (vocab: number) => Promise<Corpus>;
  log?: (line: string) => void;
  /** Stop after this many steps of this worker (default: run until stop()). */
  maxSteps?: number;
  /** Stop once the model stands at this step (absolute; every worker of a pipeline given the same value stops together). */
  untilStep?: number;
  /** A neighbour silent this long fails the step. */
  timeoutMs?: number;
  onStep?: (s: WorkerStep) => void;
  /** Called the moment this worker has applied a step's update, before anything else of the step (loss report, onStep). */
  onUpdateApplied?: (step: number) => void;
  /**
   * Verification by recomputation (src/train/work.ts). Every worker of a swarm must use the same fraction:
   * default AUDIT_FRACTION with a fresh random secret coin per worker.
   */
  audit?: AuditOptions;
  /** Every unit of work done, with where it was done (a ReceiptReporter turns these into signed receipts). */
  onWork?: (w: WorkDone, c: WorkContext) => void;
  /** Fault injection (malicious-worker tests only): see RunnerOptions.corrupt. */
  corrupt?: (step: number, micro: number) => boolean;
  /** Share of the device's turns inference gets while training also waits, in [0, 1] (default 0.5; see GpuTurns). */
  inferencePriority?: number;
  /** GPU-use cap: share of wall time the device may compute, in (0, 1] (default 1). */
  dutyCycle?: number;
}

/** Share of forwards recomputed by a sibling replica in a swarm (its cost: about a third of that in extra compute). */
export const AUDIT_FRACTION = 0.1;

function defaultAudit(): AuditOptions {
  return { fraction: AUDIT_FRACTION, coin: secretCoin(crypto.getRandomValues(new Uint8Array(32))) };
}

export interface WorkerStep {
  step: number;
  /** Mean loss of the step (last stage only). */
  loss?: number;
  ms: number;
  bytesSent: number;
  bytesReceived: number;
}

/** One configuration of the pipeline: this worker's stage, epoch and peers, from one resume to the next change. */
interface Epoch {
  a: Assignment;
  layout: string;
  epoch: number;
  /** Frame model field: the model id and the epoch, so frames of an abandoned configuration are refused. */
  tag: string;
  o: RecipeOptions;
  replica: number;
  replicas: number[];
  /** Worker id (s<stage>r<replica>, replicas numbered densely in replica order) → peer id, and back. */
  directory: Map<string, string>;
  workerOf: Map<string, { stage: number; replica: number }>;
  held: HeldStage;
  runner: StageRunner;
  transport: NetTransport;
  sampler: BatchSampler;
}

/**
 * The tensor transport of one epoch. A StageRunner whose step is aborted leaves its pending sends behind; one
 * that fails later (the receiver already closed that epoch's transport) must not become an unhandled rejection,
 * which would take the whole process down. Callers that await a send still see its failure.
 */
class EpochTransport extends NetTransport {
  private readonly epochSignal: AbortSignal;

  /** `signal` ends the epoch: pending and later sends reject at once (a write stuck on a peer that left would hold the step for minutes). */
  constructor(opts: NetTransportOptions, signal: AbortSignal) {
    super(opts);
    this.epochSignal = signal;
    signal.addEventListener('abort', () => this.close(), { once: true });
  }

  override send(to: string, frame: Frame): Promise<void> {
    const sent = abortable(super.send(to, frame), this.epochSignal);
    sent.catch(() => {});
    return sent;
  }
}

/** Every stage of the model has at least one holder. */
function complete(a: Assignment): boolean {
  return Array.from({ length: a.stages }, (_, s) => s).every((s) =>
    a.pipeline.some((p) => p.stage === s && p.peers.length > 0),
  );
}

/** Workers number replicas densely (the coordinator's replica numbers may have gaps) in replica order. */
function directoryOf(a: Assignment): { directory: Map<string, string>; replicas: number[] } {
  const directory = new Map<string, string>();
  const replicas: number[] = [];
  for (const st of [...a.pipeline].sort((x, y) => x.stage - y.stage)) {
    const peers = [...st.peers].sort((x, y) => x.replica - y.replica);
    peers.forEach((p, r) => directory.set(workerId(st.stage, r), p.peerId));
    replicas.push(peers.length);
  }
  return { directory, replicas };
}

function specOf(a: Assignment): StageSpec {
  return {
    index: a.stage,
    count: a.stages,
    firstLayer: a.firstLayer,
    endLayer: a.endLayer,
    hasEmbedding: a.stage === 0,
    hasHead: a.stage === a.stages - 1,
  };
}

/** A stage rebuilt from a checkpoint that readCheckpoint already verified. */
function stageFrom(gpu: Gpu, cfg: ModelConfig, ck: StageCheckpoint): Stage {
  const stage = Stage.create(gpu, cfg, ck.spec, ck.params);
  for (const [name, slot] of stage.slots) {
    gpu.write(slot.m, ck.m.get(name)!);
    gpu.write(slot.v, ck.v.get(name)!);
  }
  stage.step = ck.step;
  return stage;
}

export class SwarmWorker {
  readonly opts: SwarmWorkerOptions;
  private readonly audit: AuditOptions;
  readonly peerId: string;
  /** Training steps this worker's stage has applied (the next step it runs). */
  step = 0;
  private stopped = false;
  private heartbeat?: ReturnType<typeof setInterval>;
  private heartbeatMs = 2000;
  private latest?: JoinAnswer;
  /** Stage states held: the assigned stage, and briefly the one this worker left (others may still fetch it). */
  private holdings: HeldStage[] = [];
  private holdingsModel = '';
  private phase: Phase = 'idle';
  private layout = '';
  /** The last epoch this worker was ready in. */
  private epoch = 0;
  private announced: { held: HeldInfo[]; reported: number } = { held: [], reported: 0 };
  private resumeAt?: Resume;
  /** Aborted when the pipeline changes or a worker of this epoch leaves it: ends the configuration or step in flight. */
  private phaseCtl = new AbortController();
  private current?: Epoch;
  private readonly losses = new LossInbox();
  private sync?: SyncServer;
  private stages?: StageServer;
  private corpus?: { vocab: number; data: Promise<Corpus> };
  private firstStep?: number;
  private paused = false;
  private unpause?: () => void;
  /** A training step is in flight (pause() lets it finish before the device's turns stop). */
  private stepping = false;
  /**
   * This peer's device: training units take turns on it with inference requests (hand the same GpuTurns to
   * the InferenceServer), under the inference priority and the duty cycle.
   */
  readonly turns: GpuTurns;

  constructor(opts: SwarmWorkerOptions) {
    this.opts = opts;
    this.turns = new GpuTurns({ inferenceShare: opts.inferencePriority ?? 0.5, dutyCycle: opts.dutyCycle ?? 1 });
    this.audit = opts.audit ?? defaultAudit();
    this.peerId = opts.node.peerId.toString();
  }

  private log(line: string): void {
    (this.opts.log ?? console.log)(`[worker ${short(this.peerId)}] ${line}`);
  }

  /** What this worker is doing now (for UIs): its phase and the epoch of its pipeline configuration. */
  /**
   * After run() has reached its step target: keep heartbeating so the stage stays this peer's (it goes on
   * serving inference with it) until close().
   */
  keepAlive(): void {
    if (this.stopped) return;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => void this.beat(), this.heartbeatMs);
  }

  /** The stage this worker holds now and where it sits (round, replica): what it serves inference for. */
  heldStage(): { modelId: string; stage: Stage; round: number; replica: number; replicas: number } | null {
    const c = this.current;
    return c && !this.stopped
      ? {
          modelId: c.a.modelId,
          stage: c.held.stage,
          round: c.epoch,
          replica: c.replica,
          replicas: c.replicas[c.a.stage],
        }
      : null;
  }

  get state(): { phase: Phase; epoch: number; stage?: number } {
    return { phase: this.phase, epoch: this.epoch, stage: this.current?.a.stage };
  }

  /** Joins, waits for a stage, connects and trains until stop(), maxSteps or untilStep, riding out pipeline changes. */
  async run(): Promise<void> {
    const { client } = this.opts;
    let answer = await client.join(this.peerId, this.opts.tokensPerSecond, this.opts.kind);
    this.heartbeatMs = answer.heartbeatMs;
    // Start once every stage has a holder and the layout held still for one heartbeat (joins arriving together
    // move peers around while the coordinator balances them).
    let previous = '';
    for (;;) {
      if (this.stopped) return;
      // Encoding the corpus holds the event loop for a second or more at a time: start it now, while nothing
      // waits on this worker (one whose heartbeats stall for 3 beats is declared gone).
      if (answer.status === 'assigned') this.loadCorpus(answer.assignment.config.vocab).catch(() => {});
      const layout = answer.status === 'assigned' && complete(answer.assignment) ? layoutKey(answer.assignment) : '';
      if (layout && layout === previous) break;
      if (answer.status === 'wait') this.log(`waiting: ${answer.reason}`);
      else if (!layout)
        this.log(
          `stage ${answer.assignment.stage} of ${answer.assignment.modelId}: waiting for holders of the other stages`,
        );
      previous = layout;
      await sleep(answer.heartbeatMs);
      answer = await this.heartbeatOnce();
    }
    this.latest = answer;
    if (answer.status === 'assigned') await this.loadCorpus(answer.assignment.config.vocab);
    this.sync = new SyncServer({
      node: this.opts.node,
      handler: { status: (from, req) => this.statusFor(from, req), losses: (from, req) => this.takeLosses(from, req) },
      log: (m) => this.log(`warning: ${m}`),
    });
    this.stages = new StageServer({
      node: this.opts.node,
      log: { info: (m) => this.log(m), warn: (m) => this.log(`warning: ${m}`) },
      source: {
        assignedStage: (model, peer) => this.assignedStage(model, peer),
        checkpoint: (model, stage, step) => this.serveCheckpoint(model, stage, step),
      },
    });
    await this.sync.start();
    await this.stages.start();
    this.heartbeat = setInterval(() => void this.beat(), this.heartbeatMs);
    try {
      await this.loop();
    } finally {
      clearInterval(this.heartbeat);
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let failedAt = -1;
    while (!this.stopped) {
      const answer = this.latest!;
      if (answer.status !== 'assigned' || !complete(answer.assignment)) {
        this.enterIdle(answer.status === 'assigned' ? layoutKey(answer.assignment) : 'wait');
        this.log(
          answer.status === 'wait'
            ? `waiting: ${answer.reason}`
            : `stage ${answer.assignment.stage} of ${answer.assignment.modelId}: waiting for holders of the other stages`,
        );
        await this.untilLayoutChanges(this.layout);
        continue;
      }
      const ctl = new AbortController();
      this.phaseCtl = ctl;
      try {
        const epoch = await this.configure(answer.assignment, ctl.signal);
        if (!epoch) continue; // the stage is lost: configure waited for the next change
        if (await this.train(epoch, ctl.signal)) return;
      } catch (e) {
        if (this.stopped) return;
        this.current?.transport.close();
        if (ctl.signal.aborted) {
          this.log(`pipeline changed (${String(ctl.signal.reason?.message ?? ctl.signal.reason)}): reconfiguring`);
          continue;
        }
        failures = failedAt === this.step ? failures + 1 : 1;
        failedAt = this.step;
        if (failures > 5) throw e;
        this.log(`step ${this.step} failed (${(e as Error).message}); reconfiguring (attempt ${failures} of 5)`);
        await sleep(this.heartbeatMs);
      }
    }
  }

  // ---- heartbeats -------------------------------------------------------------------------------

  private linkMeter?: LinkMeter;

  /** A heartbeat; a peer the coordinator declared gone (409) joins again and keeps its stage state. */
  private async heartbeatOnce(): Promise<JoinAnswer> {
    const t = this.current?.transport.stats;
    const stats = {
      step: this.step,
      epoch: this.epoch,
      bytesSent: t?.bytesSent ?? 0,
      bytesReceived: t?.bytesReceived ?? 0,
    };
    // Per-peer bytes and round trips: the coordinator's measured links (Researcher topology, bytes per token).
    const links = (this.linkMeter ??= new LinkMeter(this.opts.node)).reports(this.current?.transport.peerStats);
    try {
      return await this.opts.client.heartbeat(this.peerId, stats, links);
    } catch (e) {
      if (!(e instanceof CoordinatorError) || (e.status !== 409 && e.status !== 404)) throw e;
      this.log(`the coordinator no longer counts this peer (${e.message}); joining again`);
      return this.opts.client.join(this.peerId, this.opts.tokensPerSecond, this.opts.kind);
    }
  }

  private async beat(): Promise<void> {
    let a: JoinAnswer;
    try {
      a = await this.heartbeatOnce();
    } catch (e) {
      this.log(`heartbeat failed: ${(e as Error).message}`);
      return;
    }
    this.latest = a;
    const key = a.status === 'assigned' ? layoutKey(a.assignment) : 'wait';
    if (this.layout && key !== this.layout && !this.phaseCtl.signal.aborted) {
      const gone = this.current
        ? [...this.current.directory.values()].filter(
            (p) => a.status !== 'assigned' || !a.assignment.pipeline.some((s) => s.peers.some((x) => x.peerId === p)),
          )
        : [];
      this.phaseCtl.abort(new Reconfigure(gone.length ? `${gone.map(short).join(', ')} left it` : 'new layout'));
    }
  }

  private async untilLayoutChanges(layout: string): Promise<void> {
    const keyOf = (a?: JoinAnswer) => (a?.status === 'assigned' ? layoutKey(a.assignment) : 'wait');
    while (!this.stopped && keyOf(this.latest) === layout) await sleep(100);
  }

  // ---- what other workers ask ---------------------------------------------------------------------

  private statusFor(from: string, req: StatusRequest): SyncStatus {
    // A worker of this epoch is agreeing on a resume again: the step in flight cannot finish without it. (Only
    // a member counts: anyone else asking must not be able to stall training.)
    const mine = this.phase === 'ready' || this.phase === 'training';
    const member = this.current?.workerOf.has(from) ?? false;
    if (
      mine &&
      member &&
      req.layout === this.layout &&
      req.phase === 'paused' &&
      req.epoch >= this.epoch &&
      !this.phaseCtl.signal.aborted
    ) {
      this.phaseCtl.abort(new Reconfigure(`${short(from)} left epoch ${this.epoch}`));
    }
    return {
      layout: this.layout,
      phase: this.phase,
      epoch: this.epoch,
      reported: this.announced.reported,
      held: this.phase === 'paused' ? this.announced.held : this.holdings.map((h) => h.info),
      resume: mine ? this.resumeAt : undefined,
    };
  }

  private takeLosses(from: string, req: LossesRequest): void {
    const c = this.current;
    if (!c || (this.phase !== 'training' && this.phase !== 'ready')) throw new Error('not training');
    if (req.model !== c.tag || req.epoch !== c.epoch)
      throw new Error(`losses for ${req.model} epoch ${req.epoch}, this worker trains ${c.tag}`);
    const last = c.a.stages - 1;
    if (c.a.stage !== last || c.replica !== 0) throw new Error('this worker does not report losses');
    const w = c.workerOf.get(from);
    if (!w || w.stage !== last || w.replica === 0) throw new Error(`${from} is not a replica of the last stage`);
    if (req.step < c.held.step - 1 || req.step > c.held.step + 1)
      throw new Error(`step ${req.step} is outside [${c.held.step - 1}, ${c.held.step + 1}]`);
    const R = c.replicas[last];
    for (const [m] of req.losses)
      if (m >= c.o.micro || m % R !== w.replica) throw new Error(`micro-batch ${m} is not replica ${w.replica}'s`);
    this.losses.put(req.step, req.losses);
  }

  /** The stage `peer` has in `model` in the assignment this worker last saw. */
  private assignedStage(model: string, peer: string): number | undefined {
    const a = this.latest;
    if (a?.status !== 'assigned' || a.assignment.modelId !== model) return undefined;
    return a.assignment.pipeline.find((s) => s.peers.some((p) => p.peerId === peer))?.stage;
  }

  private async serveCheckpoint(model: string, stage: number, step: number) {
    const h = this.holdingsModel === model ? this.holdings.find((x) => x.index === stage) : undefined;
    if (!h) return { code: 'not-held' as const, error: `this peer holds no state of stage ${stage} of ${model}` };
    if (this.phase === 'training' || h.step !== step)
      return {
        code: 'not-ready' as const,
        error: `stage ${stage} stands at step ${h.step}${this.phase === 'training' ? ' and is training' : ''}, not ${step}`,
      };
    return h.checkpoint();
  }

  // ---- reconfiguration ----------------------------------------------------------------------------

  private enterIdle(layout: string): void {
    this.current?.transport.close();
    this.current = undefined;
    this.layout = layout;
    this.phase = 'idle';
    this.resumeAt = undefined;
  }

  private recipeOf(a: Assignment): RecipeOptions {
    const cfg = a.config;
    return {
      ...defaultRecipe(this.opts.gpu.adapter.isSoftware),
      vocab: cfg.vocab,
      dModel: cfg.dModel,
      heads: cfg.heads,
      context: cfg.context,
      stages: a.stages,
      blocks: a.endLayer - a.firstLayer,
      micro: a.microBatches,
      batch: a.batch,
      seed: cfg.seed ?? 1,
      codec: a.codec as CodecName,
      k: Math.max(1, Math.floor(cfg.dModel / 4)),
    };
  }

  private loadCorpus(vocab: number): Promise<Corpus> {
    if (this.corpus?.vocab !== vocab) this.corpus = { vocab, data: this.opts.loadCorpus(vocab) };
    return this.corpus.data;
  }

  /** Steps the coordinator has recorded for the model (done or failed; reports are contiguous by construction). */
  private async reportedSteps(modelId: string, signal: AbortSignal): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        const { model } = await this.opts.client.model(modelId);
        return model.steps.done + model.steps.failed;
      } catch (e) {
        if (attempt >= 4) throw e;
        await sleep(500, signal);
      }
    }
  }

  /** Pauses, agrees with the new pipeline where to resume, takes its stage and waits until everyone is ready. */
  private async configure(a: Assignment, signal: AbortSignal): Promise<Epoch | undefined> {
    const layout = layoutKey(a);
    this.enterIdle(layout);
    this.losses.clear();
    if (this.holdingsModel !== a.modelId) {
      for (const h of this.holdings) h.destroy();
      this.holdings = [];
      this.holdingsModel = a.modelId;
    }
    const reported = await this.reportedSteps(a.modelId, signal);
    this.announced = { held: this.holdings.map((h) => h.info), reported };
    this.phase = 'paused';
    const o = this.recipeOf(a);
    const spec = specOf(a);
    const { directory, replicas } = directoryOf(a);
    const workerOf = new Map(
      [...directory].map(([id, peer]) => [
        peer,
        { stage: Number(id.slice(1).split('r')[0]), replica: Number(id.split('r')[1]) },
      ]),
    );
    const me = workerOf.get(this.peerId);
    if (!me) throw new Error(`assignment for ${a.modelId} does not list this peer`);
    const members = [...workerOf.keys()].filter((p) => p !== this.peerId);
    this.log(
      `stage ${a.stage} (replica ${me.replica}) of ${a.modelId}: layers ${a.firstLayer}–${a.endLayer - 1}, ${a.stages} stages, replicas [${replicas}], codec ${a.codec}; holding ${this.announced.held.map((h) => `stage ${h.stage}@${h.step}${h.backup ? '+backup' : ''}`).join(', ') || 'nothing'}`,
    );
    const meet: Rendezvous = {
      node: this.opts.node,
      relayAddr: this.opts.relayAddr,
      self: this.peerId,
      members,
      layout,
      signal,
      log: (m) => this.log(m),
    };
    await connectAll(meet);

    const found = await collectStatuses(meet, a.modelId, this.epoch);
    let resume: Resume;
    let sources: string[];
    if (found.adopt) {
      resume = found.adopt;
      sources = [...found.statuses]
        .filter(([, st]) => st.held.some((h) => h.stage === a.stage))
        .map(([p]) => p)
        .sort();
      this.log(`resuming as the others decided: step ${resume.step}, epoch ${resume.epoch}`);
    } else {
      const views: MemberView[] = [...found.statuses].map(([peerId, status]) => ({
        peerId,
        stage: workerOf.get(peerId)!.stage,
        status,
      }));
      views.push({
        peerId: this.peerId,
        stage: a.stage,
        status: { held: this.announced.held, reported, epoch: this.epoch },
      });
      const plan = planResume(views, a.stages);
      if (plan.kind === 'lost') {
        this.log(
          `STAGE LOST: ${plan.reason}. Model ${a.modelId} cannot train until a peer holding stage ${plan.stages.join(', ')} at a matching step joins; waiting for the pipeline to change`,
        );
        await abortable(new Promise(() => {}), signal);
        return undefined;
      }
      resume = { step: plan.step, epoch: plan.epoch, fresh: plan.fresh };
      sources = plan.sources.get(a.stage) ?? [];
      this.log(
        `resume at step ${resume.step}, epoch ${resume.epoch}${plan.fresh ? ' (no peer holds this model: seeded initialisation)' : ''}`,
      );
    }

    // Bring every state this worker holds to the resume step: undo an update applied past it, drop what cannot get there.
    for (const h of [...this.holdings]) {
      if (!h.reaches(resume.step)) {
        this.log(`dropping stage ${h.index} state at step ${h.step}: it cannot stand at step ${resume.step}`);
        h.destroy();
        this.holdings.splice(this.holdings.indexOf(h), 1);
      } else if (h.step !== resume.step) {
        h.rollback();
        this.log(
          `rolled back stage ${h.index} from step ${resume.step + 1} to ${resume.step}: the update of step ${resume.step} is undone and will be recomputed`,
        );
      }
    }
    let held = this.holdings.find((h) => h.index === a.stage);
    if (!held) {
      held = resume.fresh
        ? this.seeded(a, o, spec, resume.step)
        : await this.fetch(
            a,
            spec,
            resume.step,
            sources.filter((p) => p !== this.peerId),
            signal,
          );
      this.holdings.push(held);
    }

    const corpus = await this.loadCorpus(a.config.vocab);
    const sampler = new BatchSampler(corpus.train, { seed: o.seed, batchSize: o.batch, seq: o.context });
    const tag = `${a.modelId}#${resume.epoch}`;
    const bounds = recipeBoundaries(this.opts.gpu, o);
    const codecs = Array.from({ length: a.stages - 1 }, (_, b) => bounds.codecs?.[b].name ?? 'none');
    const transport = this.transportFor(a, o, tag, me.replica, replicas, codecs, directory, held, signal);
    await transport.start();
    const topology: Topology = { model: tag, stages: a.stages, replicas };
    const work: WorkContext = {
      model: a.modelId,
      round: resume.epoch,
      spec,
      replica: me.replica,
      replicas: replicas[a.stage],
      cfg: held.stage.cfg,
      batch: o.batch,
      seq: o.context,
    };
    const runner = new StageRunner(held.stage, me.replica, transport, topology, {
      adam: recipeAdam(o),
      codecs: bounds.codecs,
      afterStep: bounds.afterStep,
      timeoutMs: this.opts.timeoutMs ?? 60_000,
      clipNorm: o.clip > 0 ? o.clip : undefined,
      audit: this.audit,
      onWork: this.opts.onWork && ((w) => this.opts.onWork!(w, work)),
      corrupt: this.opts.corrupt,
      turns: this.turns,
    });
    const epoch: Epoch = {
      a,
      layout,
      epoch: resume.epoch,
      tag,
      o,
      replica: me.replica,
      replicas,
      directory,
      workerOf,
      held,
      runner,
      transport,
      sampler,
    };
    this.current = epoch;
    this.step = held.step;
    this.epoch = resume.epoch;
    this.resumeAt = resume;
    this.phase = 'ready';
    await awaitReady(meet, a.modelId, resume.epoch);
    this.phase = 'training';
    this.log(`epoch ${resume.epoch}: training from step ${resume.step} with ${members.length} other worker(s)`);
    return epoch;
  }

  private seeded(a: Assignment, o: RecipeOptions, spec: StageSpec, step: number): HeldStage {
    const stage = Stage.create(this.opts.gpu, a.config, spec);
    recipeBoundaries(this.opts.gpu, o).init(stage);
    return new HeldStage(stage, step);
  }

  /** The stage's checkpoint at `step` from one of `sources`, verified, on this worker's GPU. */
  private async fetch(
    a: Assignment,
    spec: StageSpec,
    step: number,
    sources: string[],
    signal: AbortSignal,
  ): Promise<HeldStage> {
    if (!sources.length) throw new Error(`no peer of the pipeline holds stage ${a.stage} to fetch it from`);
    const deadline = Date.now() + 120_000;
    for (;;) {
      for (const peer of sources) {
        try {
          const got = await fetchStage(
            this.opts.node,
            peer,
            { model: a.modelId, stage: a.stage, step },
            { cfg: a.config, spec },
            { signal, timeoutMs: 60_000 },
          );
          const held = new HeldStage(stageFrom(this.opts.gpu, a.config, got.checkpoint), step);
          // Serialising what landed on this GPU gives the holder's file back byte for byte if nothing was lost on the way.
          const resaved = await sha256Hex(await held.checkpoint());
          this.log(
            `loaded stage ${a.stage} at step ${step} from ${short(peer)}: ${got.bytes.length} bytes, sha256 ${got.sha256}; re-saved here sha256 ${resaved}${resaved === got.sha256 ? '' : ' (DIFFERS)'}`,
          );
          return held;
        } catch (e) {
          if (signal.aborted) throw new Reconfigure(String(signal.reason?.message ?? signal.reason));
          this.log(`stage ${a.stage} from ${short(peer)}: ${(e as Error).message}`);
        }
      }
      if (Date.now() > deadline) throw new Error(`no holder served stage ${a.stage} at step ${step} within 120 s`);
      await sleep(300, signal);
    }
  }

  private transportFor(
    a: Assignment,
    o: RecipeOptions,
    tag: string,
    replica: number,
    replicas: number[],
    codecs: string[],
    directory: Map<string, string>,
    held: HeldStage,
    signal: AbortSignal,
  ): NetTransport {
    const rows = o.batch * o.context;
    return new EpochTransport(
      {
        node: this.opts.node,
        id: workerId(a.stage, replica),
        resolve: (id) => {
          const p = directory.get(id);
          if (!p) throw new FrameError(`no worker ${id} in this pipeline`);
          return p;
        },
        limits: frameLimitsFor(a.config, o.batch, a.stages, specOf(a)),
        check: (frame: Frame, fromPeer: string) => {
          checkFrame(frame, {
            model: tag,
            stages: a.stages,
            replicas,
            self: { stage: a.stage, replica },
            rows,
            width: a.config.dModel,
            codecs,
            minStep: held.step - 1,
            maxStep: held.step + 2,
            microBatches: o.micro,
            vocab: a.config.vocab,
          });
          // The header names a worker; the connection proves which peer sent it.
          const expected = directory.get(workerId(frame.fromStage, frame.fromReplica));
          if (expected !== fromPeer)
            throw new FrameError(
              `frame claims to come from ${workerId(frame.fromStage, frame.fromReplica)} (${expected}) but came from ${fromPeer}`,
            );
        },
        log: { info: (m) => this.log(m), warn: (m) => this.log(`warning: ${m}`) },
      },
      signal,
    );
  }

  // ---- training -----------------------------------------------------------------------------------

  /** Trains until the step target (true), stop(), or a failure (throws; the caller reconfigures). */
  private async train(c: Epoch, signal: AbortSignal): Promise<boolean> {
    const { o, runner, held, a } = c;
    const last = a.stage === a.stages - 1;
    const reporter = last && c.replica === 0;
    const reporterPeer = c.directory.get(workerId(a.stages - 1, 0))!;
    this.firstStep ??= held.step;
    const end = Math.min(
      this.opts.untilStep ?? Infinity,
      this.opts.maxSteps === undefined ? Infinity : this.firstStep + this.opts.maxSteps,
    );
    const lossSends = new Set<Promise<void>>();
    let firstOfEpoch = true;
    while (!this.stopped && held.step < end) {
      if (this.paused && !this.stopped) this.turns.pause();
      while (this.paused && !this.stopped) await abortable(new Promise<void>((r) => (this.unpause = r)), signal);
      if (this.stopped) break;
      const step = held.step;
      const t0 = performance.now();
      const micro = recipeMicroBatches(c.sampler, o, step);
      held.begin();
      let own = new Map<number, number>();
      this.stepping = true;
      try {
        await runner.run({
          base: step,
          steps: [micro],
          batch: o.batch,
          seq: o.context,
          signal,
          opts: { staleness: 0, correction: 'none', lr: () => learningRate(step, o) },
          onUpdate: (_k, r) => {
            held.commit();
            own = r.losses;
            this.opts.onUpdateApplied?.(step);
            if (last && !reporter && r.losses.size > 0) {
              const req: LossesRequest = { type: 'losses', model: c.tag, epoch: c.epoch, step, losses: [...r.losses] };
              const sent: Promise<void> = sendLosses(this.opts.node, reporterPeer, req)
                .catch((e: Error) => this.log(`losses of step ${step} to ${short(reporterPeer)}: ${e.message}`))
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
          this.log(
            `step ${step}: update applied, then the step failed (${(e as Error).message}); kept unless the others roll back`,
          );
        this.step = held.step;
        throw e;
      } finally {
        this.stepping = false;
      }
      if (held.step !== step + 1) throw new Error(`stage ${held.index}: step ${step} ended without its update`);
      this.step = held.step;
      let loss: number | undefined;
      if (reporter) {
        const all = new Map(own);
        if (all.size < o.micro)
          for (const [m, x] of await this.losses.take(step, o.micro - own.size, signal, this.opts.timeoutMs ?? 60_000))
            all.set(m, x);
        let sum = 0;
        for (let m = 0; m < o.micro; m++) sum += all.get(m)!;
        loss = sum / o.micro;
        await this.report(a.modelId, step, loss, o.micro * o.batch * o.context);
      }
      if (firstOfEpoch) {
        // Everyone of this epoch has its stage now: a state kept only for others to fetch can go.
        for (const h of this.holdings.filter((x) => x !== held)) {
          h.destroy();
          this.log(`released stage ${h.index}: this peer now holds only stage ${held.index}`);
        }
        this.holdings = [held];
        firstOfEpoch = false;
      }
      const t = c.transport.stats;
      this.opts.onStep?.({
        step,
        loss,
        ms: performance.now() - t0,
        bytesSent: t.bytesSent,
        bytesReceived: t.bytesReceived,
      });
    }
    // The reporter needs this worker's last losses before it can record the last step.
    await Promise.all(lossSends);
    return held.step >= end;
  }

  /** Records a step with the coordinator (a non-finite loss is recorded as a failed step). */
  private async report(modelId: string, step: number, loss: number, tokens: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (Number.isFinite(loss)) {
          const r = (await this.opts.client.reportStep(modelId, { step, loss, tokens, peerId: this.peerId })) as {
            duplicate?: boolean;
            step?: { loss?: number };
          };
          if (r.duplicate) this.log(`step ${step} was already recorded (loss ${r.step?.loss}; recomputed ${loss})`);
          return;
        }
        // The API records a failed step without a loss; the client only knows done steps, so this goes by hand.
        const res = await fetch(`${this.opts.client.url}/api/models/${encodeURIComponent(modelId)}/metrics`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ step, status: 'failed', peerId: this.peerId }),
        });
        if (!res.ok && res.status !== 409)
          throw new Error(`recording step ${step} as failed: ${res.status} ${await res.text()}`);
        this.log(`step ${step} has a non-finite loss (${loss}); recorded as failed`);
        return;
      } catch (e) {
        if (attempt >= 3) throw e;
        await sleep(300 * (attempt + 1));
      }
    }
  }

  /**
   * Finishes the step in flight, then holds before the next one until resume(). Heartbeats go on and the
   * stage stays held; the rest of the pipeline waits (and, past its receive timeout, reconfigures with this
   * worker, which then holds again).
   */
  pause(): void {
    this.paused = true;
    // The device stops too (inference included: a hidden tab or a laptop on battery computes nothing), at once
    // between steps, else once the step in flight has finished.
    if (!this.stepping) this.turns.pause();
  }

  resume(): void {
    this.paused = false;
    this.turns.resume();
    this.unpause?.();
    this.unpause = undefined;
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
    this.stopped = true;
    this.unpause?.();
    this.phaseCtl.abort(new Reconfigure('worker stopped'));
  }

  /** Leaves the swarm and frees the stage. */
  async close(): Promise<void> {
    this.stop();
    clearInterval(this.heartbeat);
    try {
      await this.opts.client.leave(this.peerId);
    } catch (e) {
      this.log(`leave failed: ${(e as Error).message}`);
    }
    this.current?.transport.close();
    this.current = undefined;
    await this.sync?.stop().catch(() => {});
    await this.stages?.stop().catch(() => {});
    for (const h of this.holdings) h.destroy();
    this.holdings = [];
  }
}
