/**
 * One volunteering session of this tab, outside React: the tab's libp2p peer (identity from IndexedDB, the
 * coordinator's relay for signalling), a SwarmWorker that trains its stage on this tab's GPU, and the events
 * the page shows. Loaded on demand (it pulls in libp2p), so the GPU page does not pay for it.
 */
import type { Connection } from '@libp2p/interface';
import type { Gpu } from '../../gpu/index.ts';
import { CoordinatorClient, type JoinAnswer } from '../../net/coordinator-client.ts';
import { loadOrCreateKey } from '../../net/identity-browser.ts';
import { createPeer, isDirectWebRTC, NetError, waitForRelayAddress } from '../../net/node.ts';
import { InferenceServer } from '../../infer/serve.ts';
import { IndexedDbOutbox } from '../../ledger/outbox-idb.ts';
import { ReceiptReporter } from '../../ledger/reporter.ts';
import { SwarmWorker, type WorkerStep } from '../../net/swarm-worker.ts';
import { measureThroughput } from '../../train/throughput.ts';
import { fetchCorpus } from './corpus.ts';
import { browserSnapshots } from './snapshot-browser.ts';

/** Reference tokens/s a software adapter claims: SwiftShader measured 60–80, and timing it takes over 10 s. */
export const SOFTWARE_TOKENS_PER_SECOND = 50;

export type Phase = 'loading' | 'connecting';

export interface SessionEvents {
  /** Every join and heartbeat answer (assignment, pipeline, or why to wait). */
  answer(a: JoinAnswer): void;
  phase(p: Phase): void;
  step(s: WorkerStep): void;
  /** Distinct peers this tab has a direct WebRTC connection to. */
  peers(n: number): void;
  log(line: string): void;
}

export interface Speed {
  tokensPerSecond: number;
  source: 'measured' | 'fixed';
}

/** Optional SwarmWorker hook (finish the step in flight, then hold until resume). Used when the worker has it. */
export interface PauseHook {
  pause(): void;
  resume(): void;
}

/** The worker's graceful leave (snapshot the stage, hand it to a successor, then leave), where this build has it. */
export function gracefulLeave(worker: SwarmWorker): () => Promise<void> {
  const w = worker as unknown as { leave?: () => Promise<void> };
  return typeof w.leave === 'function' ? () => w.leave!() : () => worker.close();
}

export function pauseHook(worker: SwarmWorker): PauseHook | undefined {
  const w = worker as unknown as Partial<PauseHook>;
  return typeof w.pause === 'function' && typeof w.resume === 'function' ? (w as PauseHook) : undefined;
}

/** Optional SwarmWorker hooks for the GPU-use cap and inference's share of GPU turns (src/gpu/gpu-turns.ts). */
export interface TuningHooks {
  setDutyCycle?(d: number): void;
  setInferencePriority?(p: number): void;
}

export function tuningHooks(worker: SwarmWorker): TuningHooks {
  const w = worker as unknown as TuningHooks;
  return {
    setDutyCycle: typeof w.setDutyCycle === 'function' ? (d) => w.setDutyCycle!(d) : undefined,
    setInferencePriority: typeof w.setInferencePriority === 'function' ? (p) => w.setInferencePriority!(p) : undefined,
  };
}

/**
 * A CoordinatorClient that also hands every join/heartbeat answer to the page, and asks for the volunteer's
 * chosen model on every join (the first and any after being declared gone); none means "where most needed".
 */
class WatchedClient extends CoordinatorClient {
  private readonly onAnswer: (a: JoinAnswer) => void;
  private readonly preferModel: string | undefined;

  constructor(url: string, onAnswer: (a: JoinAnswer) => void, preferModel?: string) {
    super(url);
    this.onAnswer = onAnswer;
    this.preferModel = preferModel;
  }

  override async join(...args: Parameters<CoordinatorClient['join']>): Promise<JoinAnswer> {
    const [peerId, tokensPerSecond, kind, preferModel] = args;
    const a = await super.join(peerId, tokensPerSecond, kind, preferModel ?? this.preferModel);
    this.onAnswer(a);
    return a;
  }

  override async heartbeat(...args: Parameters<CoordinatorClient['heartbeat']>): Promise<JoinAnswer> {
    const a = await super.heartbeat(...args);
    this.onAnswer(a);
    return a;
  }
}

/** Software adapters get a fixed modest figure; a real GPU times the reference workload (well under a second). */
export async function tabSpeed(gpu: Gpu): Promise<Speed> {
  if (gpu.adapter.isSoftware) return { tokensPerSecond: SOFTWARE_TOKENS_PER_SECOND, source: 'fixed' };
  return { tokensPerSecond: await measureThroughput(gpu), source: 'measured' };
}

export interface Session {
  peerId: string;
  worker: SwarmWorker;
  /** Settles when the worker stops: resolves on a clean stop, rejects with the failure. */
  done: Promise<void>;
  /**
   * Leaves the swarm through the worker's graceful path (snapshot, hand the stage to a successor, leave) and stops
   * the peer. Idempotent.
   */
  close(): Promise<void>;
}

export async function startSession(
  gpu: Gpu,
  speed: Speed,
  events: SessionEvents,
  origin = location.origin,
  preferModel?: string,
): Promise<Session> {
  const client = new WatchedClient(origin, (a) => events.answer(a), preferModel);
  const health = await client.health();
  const relayAddr = health.relay?.multiaddrs[0];
  if (!relayAddr)
    throw new NetError(`the coordinator at ${origin} runs no relay, so peers cannot signal WebRTC through it`);
  const privateKey = await loadOrCreateKey();
  const node = await createPeer({ relayAddr, privateKey, browser: true });
  let closing: Promise<void> | undefined;
  try {
    await waitForRelayAddress(node);
  } catch (e) {
    await node.stop();
    throw e;
  }
  const countPeers = () => {
    const direct = new Set(
      node
        .getConnections()
        .filter((c: Connection) => isDirectWebRTC(c))
        .map((c) => c.remotePeer.toString()),
    );
    events.peers(direct.size);
  };
  node.addEventListener('connection:open', countPeers);
  node.addEventListener('connection:close', countPeers);

  // Every unit of work becomes a receipt signed with this tab's peer key and posted to the coordinator's ledger.
  // Receipts wait in IndexedDB until the coordinator answers for them: a closed tab's are sent on the next visit.
  const reporter = new ReceiptReporter({
    key: privateKey,
    peerId: node.peerId.toString(),
    coordinatorUrl: origin,
    outbox: new IndexedDbOutbox((line) => events.log(line)),
    log: (line) => events.log(line),
  });
  reporter.start();
  // Stage snapshots in OPFS (IndexedDB where it is missing): the worker writes one every spec.snapshotEvery steps
  // and on a graceful leave, and resumes from them after a reload. Without either, the tab trains without them.
  const snapshots = await browserSnapshots().catch((e: unknown) => {
    events.log(`no durable storage for stage snapshots in this browser: ${(e as Error).message}`);
    return undefined;
  });
  const worker = new SwarmWorker({
    gpu,
    node,
    client,
    relayAddr,
    kind: 'browser',
    tokensPerSecond: speed.tokensPerSecond,
    loadCorpus: async (vocab) => {
      events.phase('loading');
      const corpus = await fetchCorpus(vocab, origin);
      events.phase('connecting');
      return corpus;
    },
    log: (line) => events.log(line),
    onStep: (s) => events.step(s),
    onWork: (w, c) => reporter.add(w, c),
    snapshots,
  });
  const peerId = node.peerId.toString();
  /*
   * A closed tab leaves at once instead of being declared gone after three missed heartbeats. pagehide gives no
   * time to await anything: the GPU readback, the SHA-256 and the OPFS write of a snapshot would be cut off when
   * the page is torn down (harmlessly — a torn write is never referenced — but uselessly), and so would a hand-off
   * over WebRTC. What survives a closed tab is the snapshot the worker wrote every spec.snapshotEvery steps; the
   * leave only frees the stage so the coordinator reassigns it now. It is a keepalive fetch rather than
   * sendBeacon: a beacon of a string goes as text/plain, which the coordinator refuses (415: writes are JSON
   * only); keepalive lets the request outlive the page just the same.
   */
  const leaveOnHide = () =>
    void fetch(`${origin}/api/peers/leave`, {
      method: 'POST',
      keepalive: true,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ peerId }),
    }).catch(() => {});
  addEventListener('pagehide', leaveOnHide);
  const leave = gracefulLeave(worker);
  const close = () =>
    (closing ??= (async () => {
      removeEventListener('pagehide', leaveOnHide);
      await leave();
      await reporter.stop();
      await inference.stop();
      node.removeEventListener('connection:open', countPeers);
      node.removeEventListener('connection:close', countPeers);
      await node.stop();
    })());
  gpu.onLost(() => worker.stop());
  // The tab also serves inference for the stage it holds (its current weights, between training steps).
  const inference = new InferenceServer({
    node,
    held: () => worker.heldStage(),
    key: privateKey,
    turns: worker.turns,
    log: (line) => events.log(line),
  });
  await inference.start();
  return { peerId, worker, done: worker.run(), close };
}
