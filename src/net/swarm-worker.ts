/**
 * A volunteer peer: joins the coordinator, gets one stage of one model, connects to the rest of that model's
 * pipeline over direct WebRTC, and trains its stage step after step through a StageRunner on a NetTransport —
 * the same runner the in-process Pipeline uses, so a swarm computes what one process computes. Browser-safe:
 * the tab and `npm run worker` both run it (the corpus loader is the caller's).
 */
import type { Libp2p } from 'libp2p';
import { BatchSampler } from '../data/batches.ts';
import type { Gpu } from '../gpu/index.ts';
import { Stage } from '../model/stage.ts';
import type { StageSpec } from '../model/stages.ts';
import { defaultRecipe, learningRate, recipeAdam, recipeBoundaries, recipeMicroBatches, type Corpus, type RecipeOptions } from '../train/recipe.ts';
import { StageRunner, workerId, type Topology } from '../train/stage-runner.ts';
import type { Frame } from '../train/transport.ts';
import type { Assignment, CoordinatorClient, JoinAnswer } from './coordinator-client.ts';
import { checkFrame } from './frame-check.ts';
import { FrameError, frameLimitsFor } from './frame-codec.ts';
import { NetTransport } from './net-transport.ts';
import { dialWebRTC } from './node.ts';
import type { CodecName } from '../compress/index.ts';

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
  /** Stop after this many steps (default: run until stop()). */
  maxSteps?: number;
  /** A neighbour silent this long fails the step. */
  timeoutMs?: number;
  onStep?: (s: WorkerStep) => void;
}

export interface WorkerStep {
  step: number;
  /** Mean loss of the step (last stage only). */
  loss?: number;
  ms: number;
  bytesSent: number;
  bytesReceived: number;
}

/** What a worker trains: its stage of a model, and who holds the others. */
interface Setup {
  assignment: Assignment;
  o: RecipeOptions;
  stage: Stage;
  runner: StageRunner;
  transport: NetTransport;
  sampler: BatchSampler;
  /** Peer id of each worker id (s<stage>r<replica>, replicas numbered densely in replica order). */
  directory: Map<string, string>;
}

/** Every stage of the model has at least one holder. */
function complete(a: Assignment): boolean {
  return Array.from({ length: a.stages }, (_, s) => s).every((s) => a.pipeline.some((p) => p.stage === s && p.peers.length > 0));
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

export class SwarmWorker {
  readonly opts: SwarmWorkerOptions;
  readonly peerId: string;
  private setup?: Setup;
  private abort = new AbortController();
  private stopped = false;
  private heartbeat?: ReturnType<typeof setInterval>;
  step = 0;

  constructor(opts: SwarmWorkerOptions) {
    this.opts = opts;
    this.peerId = opts.node.peerId.toString();
  }

  private log(line: string): void {
    (this.opts.log ?? console.log)(`[worker ${this.peerId.slice(-6)}] ${line}`);
  }

  /** Joins, waits for a stage, connects and trains until stop() or maxSteps. */
  async run(): Promise<void> {
    const { client } = this.opts;
    let answer = await client.join(this.peerId, this.opts.tokensPerSecond, this.opts.kind);
    // Train only once every stage has a holder and the layout held still for one heartbeat (joins arriving
    // together move peers around while the coordinator balances them).
    let previous = '';
    for (;;) {
      if (this.stopped) return;
      const layout = answer.status === 'assigned' && complete(answer.assignment) ? JSON.stringify(answer.assignment.pipeline) : '';
      if (layout && layout === previous) break;
      if (answer.status === 'wait') this.log(`waiting: ${answer.reason}`);
      else if (!layout) this.log(`stage ${answer.assignment.stage} of ${answer.assignment.modelId}: waiting for holders of the other stages`);
      previous = layout;
      await new Promise((r) => setTimeout(r, answer.heartbeatMs));
      answer = await client.heartbeat(this.peerId);
    }
    if (answer.status !== 'assigned') return;
    this.heartbeat = setInterval(() => void this.beat(), answer.heartbeatMs);
    try {
      this.setup = await this.prepare(answer.assignment);
      await this.train();
    } catch (e) {
      if (!this.stopped) throw e; // stop() aborts the step in flight: not an error
    } finally {
      clearInterval(this.heartbeat);
    }
  }

  private async beat(): Promise<void> {
    try {
      const t = this.setup?.transport.stats;
      const a: JoinAnswer = await this.opts.client.heartbeat(this.peerId, { step: this.step, bytesSent: t?.bytesSent ?? 0, bytesReceived: t?.bytesReceived ?? 0 });
      const cur = this.setup?.assignment;
      if (cur && (a.status !== 'assigned' || a.assignment.stage !== cur.stage || a.assignment.modelId !== cur.modelId || JSON.stringify(a.assignment.pipeline) !== JSON.stringify(cur.pipeline))) {
        // Churn (moving weights to a newcomer, resuming the step) is the next piece of work; until then a
        // changed pipeline stops this worker cleanly instead of training against the wrong peers.
        this.log('the coordinator changed this pipeline; stopping (re-joining with weight transfer is not implemented yet)');
        this.stop();
      }
    } catch (e) {
      this.log(`heartbeat failed: ${(e as Error).message}`);
    }
  }

  private async prepare(a: Assignment): Promise<Setup> {
    const { gpu, node } = this.opts;
    const cfg = a.config;
    const o: RecipeOptions = {
      ...defaultRecipe(gpu.adapter.isSoftware), vocab: cfg.vocab, dModel: cfg.dModel, heads: cfg.heads, context: cfg.context,
      stages: a.stages, blocks: a.endLayer - a.firstLayer, micro: a.microBatches, batch: a.batch, seed: cfg.seed ?? 1, codec: a.codec as CodecName,
      k: Math.max(1, Math.floor(cfg.dModel / 4)),
    };
    const spec: StageSpec = { index: a.stage, count: a.stages, firstLayer: a.firstLayer, endLayer: a.endLayer, hasEmbedding: a.stage === 0, hasHead: a.stage === a.stages - 1 };
    const { directory, replicas } = directoryOf(a);
    const me = [...directory].find(([, p]) => p === this.peerId);
    if (!me) throw new Error(`assignment for ${a.modelId} does not list this peer`);
    const replica = Number(me[0].split('r')[1]);
    this.log(`assigned stage ${a.stage} (replica ${replica}) of ${a.modelId}: layers ${a.firstLayer}–${a.endLayer - 1}, ${a.stages} stages, codec ${a.codec}`);
    const corpus = await this.opts.loadCorpus(cfg.vocab);
    const sampler = new BatchSampler(corpus.train, { seed: o.seed, batchSize: o.batch, seq: o.context });
    const bounds = recipeBoundaries(gpu, o);
    const stage = Stage.create(gpu, cfg, spec);
    bounds.init(stage);
    const topology: Topology = { model: a.modelId, stages: a.stages, replicas };
    const rows = o.batch * o.context;
    const codecs = Array.from({ length: a.stages - 1 }, (_, b) => bounds.codecs?.[b].name ?? 'none');
    const transport = new NetTransport({
      node, id: workerId(a.stage, replica), resolve: (id) => {
        const p = directory.get(id);
        if (!p) throw new FrameError(`no worker ${id} in this pipeline`);
        return p;
      },
      limits: frameLimitsFor(cfg, o.batch, a.stages),
      check: (frame: Frame, fromPeer: string) => {
        checkFrame(frame, { model: a.modelId, stages: a.stages, replicas, self: { stage: a.stage, replica }, rows, width: cfg.dModel, codecs, minStep: this.step - 1, maxStep: this.step + 2 });
        // The header names a worker; the connection proves which peer sent it.
        const expected = directory.get(workerId(frame.fromStage, frame.fromReplica));
        if (expected !== fromPeer) throw new FrameError(`frame claims to come from ${workerId(frame.fromStage, frame.fromReplica)} (${expected}) but came from ${fromPeer}`);
      },
      log: { info: (m) => this.log(m), warn: (m) => this.log(`warning: ${m}`) },
    });
    await transport.start();
    await this.connect(directory);
    const runner = new StageRunner(stage, replica, transport, topology, {
      adam: recipeAdam(o), codecs: bounds.codecs, afterStep: bounds.afterStep, timeoutMs: this.opts.timeoutMs ?? 60_000, clipNorm: o.clip > 0 ? o.clip : undefined,
    });
    const detail = await this.opts.client.model(a.modelId);
    this.step = detail.model.steps.done;
    return { assignment: a, o, stage, runner, transport, sampler, directory };
  }

  /** Direct WebRTC to every other worker of the pipeline: the peer with the larger id dials, the other waits. */
  private async connect(directory: Map<string, string>): Promise<void> {
    const { node, relayAddr } = this.opts;
    const others = [...new Set(directory.values())].filter((p) => p !== this.peerId);
    await Promise.all(others.filter((p) => p < this.peerId).map((p) => dialWebRTC(node, relayAddr, p, 20_000)));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const missing = others.filter((p) => !node.getConnections().some((c) => c.remotePeer.toString() === p && c.status === 'open' && c.limits === undefined));
      if (!missing.length) break;
      if (Date.now() > deadline) throw new Error(`no direct connection to ${missing.join(', ')} after 60 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
    this.log(`connected to ${others.length} peer(s) over WebRTC`);
  }

  private async train(): Promise<void> {
    const s = this.setup!;
    const { o, runner, assignment: a } = s;
    const last = a.stage === a.stages - 1;
    const end = this.opts.maxSteps === undefined ? Infinity : this.step + this.opts.maxSteps;
    while (!this.stopped && this.step < end) {
      const step = this.step;
      const t0 = performance.now();
      let loss: number | undefined;
      await runner.run({
        base: step, steps: [recipeMicroBatches(s.sampler, o, step)], batch: o.batch, seq: o.context, signal: this.abort.signal,
        opts: { staleness: 0, correction: 'none', lr: () => learningRate(step, o) },
        onUpdate: (_k, r) => {
          if (last && r.losses.size) loss = [...r.losses.values()].reduce((x, y) => x + y, 0) / r.losses.size;
        },
      });
      this.step = step + 1;
      if (last && runner.replica === 0 && loss !== undefined) {
        await this.opts.client.reportStep(a.modelId, { step, loss, tokens: o.micro * o.batch * o.context, peerId: this.peerId });
      }
      const t = s.transport.stats;
      this.opts.onStep?.({ step, loss, ms: performance.now() - t0, bytesSent: t.bytesSent, bytesReceived: t.bytesReceived });
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort('worker stopped');
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
    this.setup?.transport.close();
    this.setup?.stage.destroy();
  }
}
