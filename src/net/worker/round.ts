/**
 * One round: one configuration of a pipeline, from the resume the workers agreed on to the next change. Built
 * once (reconfigure.ts) and never changed: this worker's seat, the roster, the stage it trains, the tensor
 * transport whose frames carry the round, the StageRunner over it and the batch sampler. close() ends it.
 */
import { BatchSampler } from '../../data/batches.ts';
import type { GpuTurns } from '../../gpu/gpu-turns.ts';
import type { Gpu } from '../../gpu/index.ts';
import { recipeAdam, recipeBoundaries, type Corpus } from '../../train/recipe.ts';
import { stageSpecs } from '../../train/run-derived.ts';
import type { RunSpec } from '../../train/run-spec.ts';
import { StageRunner, workerId, type Topology } from '../../train/stage-runner.ts';
import type { Frame } from '../../train/transport.ts';
import type { AuditOptions, WorkContext, WorkDone } from '../../train/work.ts';
import type { Assignment } from '../coordinator-client.ts';
import { checkFrame } from '../frame-check.ts';
import { FrameError } from '../frame-codec.ts';
import type { HeldStage } from '../held-stage.ts';
import { NetTransport, type NetTransportOptions } from '../net-transport.ts';
import { abortable } from '../rendezvous.ts';
import { frameLimits } from '../run-limits.ts';
import type { Resume } from '../swarm-sync.ts';
import type { Roster, Seat } from './roster.ts';

export interface Round {
  readonly assignment: Assignment;
  readonly layout: string;
  /** The round number every worker of the pipeline agreed on (frames carry it). */
  readonly round: number;
  /** Frame model field: the model id and the round, so frames of an abandoned configuration are refused. */
  readonly tag: string;
  /** The model's RunSpec (the assignment's): every worker of the pipeline trains by the same one. */
  readonly spec: RunSpec;
  readonly resume: Resume;
  readonly seat: Seat;
  readonly roster: Roster;
  readonly held: HeldStage;
  readonly transport: NetTransport;
  readonly runner: StageRunner;
  readonly sampler: BatchSampler;
  close(): void;
}

/**
 * The tensor transport of one round. A StageRunner whose step is aborted leaves its pending sends behind; one
 * that fails later (the receiver already closed that round's transport) must not become an unhandled rejection,
 * which would take the whole process down. Callers that await a send still see its failure.
 */
class RoundTransport extends NetTransport {
  private readonly roundSignal: AbortSignal;

  /**
   * `signal` ends the round: pending and later sends reject at once (a write stuck on a peer that left would hold the
   * step for minutes).
   */
  constructor(opts: NetTransportOptions, signal: AbortSignal) {
    super(opts);
    this.roundSignal = signal;
    signal.addEventListener('abort', () => this.close(), { once: true });
  }

  override send(to: string, frame: Frame): Promise<void> {
    const sent = abortable(super.send(to, frame), this.roundSignal);
    sent.catch(() => {});
    return sent;
  }
}

/** What a round needs from its worker beyond the agreed resume and the stage it holds. */
export interface RoundDeps {
  gpu: Gpu;
  node: NetTransportOptions['node'];
  log: (line: string) => void;
  loadCorpus: (vocab: number) => Promise<Corpus>;
  audit: AuditOptions;
  turns: GpuTurns;
  timeoutMs?: number;
  onWork?: (w: WorkDone, c: WorkContext) => void;
  corrupt?: (step: number, micro: number) => boolean;
}

/** Sets up the round's transport (started), runner and sampler for `held`, resumed at `resume`. */
export async function openRound(
  d: RoundDeps,
  p: Pick<Round, 'assignment' | 'layout' | 'spec' | 'resume' | 'seat' | 'roster' | 'held'>,
  signal: AbortSignal,
): Promise<Round> {
  const { assignment: a, spec, resume, seat, roster, held } = p;
  const corpus = await d.loadCorpus(spec.model.vocab);
  const sampler = new BatchSampler(corpus.train, { seed: spec.seed, batchSize: spec.batch, seq: spec.model.context });
  const tag = `${a.modelId}#${resume.round}`;
  const bounds = recipeBoundaries(d.gpu, spec);
  const codecs = Array.from({ length: a.stages - 1 }, (_, b) => bounds.codecs?.[b].name ?? 'none');
  const transport = transportFor(d, a, spec, tag, seat, roster, codecs, held, signal);
  await transport.start();
  const topology: Topology = { model: tag, stages: a.stages, replicas: roster.replicas };
  const work: WorkContext = {
    model: a.modelId,
    round: resume.round,
    spec: stageSpecs(spec)[a.stage],
    replica: seat.replica,
    replicas: roster.replicas[a.stage],
    cfg: held.stage.cfg,
    batch: spec.batch,
    seq: spec.model.context,
  };
  const onWork = d.onWork;
  const runner = new StageRunner(held.stage, seat.replica, transport, topology, {
    adam: recipeAdam(spec),
    codecs: bounds.codecs,
    afterStep: bounds.afterStep,
    timeoutMs: d.timeoutMs ?? 60_000,
    clipNorm: spec.optim.clip > 0 ? spec.optim.clip : undefined,
    audit: d.audit,
    onWork: onWork && ((w) => onWork(w, work)),
    corrupt: d.corrupt,
    turns: d.turns,
  });
  return Object.freeze({
    ...p,
    round: resume.round,
    tag,
    transport,
    runner,
    sampler,
    close: () => transport.close(),
  });
}

function transportFor(
  d: RoundDeps,
  a: Assignment,
  spec: RunSpec,
  tag: string,
  seat: Seat,
  roster: Roster,
  codecs: string[],
  held: HeldStage,
  signal: AbortSignal,
): NetTransport {
  const rows = spec.batch * spec.model.context;
  return new RoundTransport(
    {
      node: d.node,
      id: workerId(a.stage, seat.replica),
      resolve: (id) => {
        const p = roster.peerOfWorker(id);
        if (!p) throw new FrameError(`no worker ${id} in this pipeline`);
        return p;
      },
      limits: frameLimits(spec, a.stage),
      check: (frame: Frame, fromPeer: string) => {
        checkFrame(frame, {
          model: tag,
          stages: a.stages,
          replicas: roster.replicas,
          self: { stage: a.stage, replica: seat.replica },
          rows,
          width: spec.model.dModel,
          codecs,
          minStep: held.step - 1,
          maxStep: held.step + 2,
          microBatches: spec.microBatches,
          vocab: spec.model.vocab,
        });
        // The header names a worker; the connection proves which peer sent it.
        const expected = roster.peerAt(frame.fromStage, frame.fromReplica);
        if (expected !== fromPeer)
          throw new FrameError(
            `frame claims to come from ${workerId(frame.fromStage, frame.fromReplica)} (${expected}) but came ` +
              `from ${fromPeer}`,
          );
      },
      log: { info: (m) => d.log(m), warn: (m) => d.log(`warning: ${m}`) },
    },
    signal,
  );
}
