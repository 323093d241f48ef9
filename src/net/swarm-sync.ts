/**
 * `/tessera/sync/2.0.0`: what the workers of one pipeline tell each other outside the tensor stream, one small
 * request and answer per stream (length-prefixed JSON, see stream-io.ts):
 *
 * - `status`: where the answering worker stands — the pipeline layout it is configuring or training, its phase,
 *   the stage states it holds (stage, training step, whether it can undo its last update), how many steps the
 *   coordinator had recorded when it paused, and, once decided, the step and round the pipeline resumes at.
 *   Workers exchange these after the coordinator changed their pipeline, to agree where training resumes
 *   (src/net/resume.ts) and to wait until every worker is ready.
 * - `losses`: a replica of the last stage hands its micro-batch losses of a step to replica 0, which reports
 *   the step's mean loss to the coordinator.
 *
 * Everything received is validated field by field; a bad message is refused with a reason and the stream reset.
 */
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import { abortOn, openStream, StreamReader, WireError, withTimeout, writeJson } from './stream-io.ts';

export const SYNC_PROTOCOL = '/tessera/sync/2.0.0';

const MAX_MESSAGE_BYTES = 256 * 1024;

export const PHASES = ['idle', 'paused', 'ready', 'training'] as const;
/**
 * idle: no pipeline; paused: agreeing where to resume; ready: state and transport set up for the agreed round;
 * training: stepping.
 */
export type Phase = (typeof PHASES)[number];

/** A stage state a worker holds: the stage, the training steps applied to it, and whether it can undo the last one. */
export interface HeldInfo {
  stage: number;
  step: number;
  /** It kept the state from before its last update (one step back is reachable). */
  backup: boolean;
  /** A snapshot on durable storage (src/net/snapshots.ts), not a live state: it reaches exactly `step`. */
  stored?: boolean;
}

/** Stage states one status may list: a few live ones and the snapshots kept of each stage a peer held. */
export const MAX_HELD = 64;

export interface Resume {
  step: number;
  /** The round (one configuration of the pipeline, numbered from 1) that resumes at `step`. */
  round: number;
  fresh: boolean;
}

export interface SyncStatus {
  /** The layout (src/net/resume.ts layoutKey) this worker is configuring or training; '' when idle. */
  layout: string;
  phase: Phase;
  /** The last round this worker was ready in (0: none yet). */
  round: number;
  held: HeldInfo[];
  /** Steps the coordinator had recorded (done or failed) when this worker paused. */
  reported: number;
  /** Ready or training: where the pipeline resumes (fresh: every stage from the seeded initialisation). */
  resume?: Resume;
}

export interface StatusRequest {
  type: 'status';
  model: string;
  /** The asker's own layout, phase and round (a worker still training a round the asker left stops its step). */
  layout: string;
  phase: Phase;
  round: number;
}

export interface LossesRequest {
  type: 'losses';
  /** The frame tag of the round (model id and round). */
  model: string;
  round: number;
  step: number;
  /** [micro-batch, loss] of the sender's micro-batches. */
  losses: Array<[number, number]>;
}

export type SyncRequest = StatusRequest | LossesRequest;

export interface SyncHandler {
  status(from: string, req: StatusRequest): SyncStatus;
  /** Throws to refuse (the reason goes back to the sender). */
  losses(from: string, req: LossesRequest): void;
}

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
const isText = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;

function parseRequest(raw: unknown): SyncRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new WireError('request is not a JSON object');
  const o = raw as Record<string, unknown>;
  if (!isText(o.model, 256) || o.model.length === 0)
    throw new WireError('model must be a non-empty string of at most 256 characters');
  if (o.type === 'status') {
    if (!isText(o.layout, 200_000)) throw new WireError('status.layout must be a string');
    if (!(PHASES as readonly unknown[]).includes(o.phase))
      throw new WireError(`status.phase must be one of ${PHASES.join(', ')}`);
    if (!isInt(o.round)) throw new WireError('status.round must be a non-negative integer');
    return { type: 'status', model: o.model, layout: o.layout, phase: o.phase as Phase, round: o.round };
  }
  if (o.type === 'losses') {
    if (!isInt(o.round) || !isInt(o.step))
      throw new WireError('losses.round and losses.step must be non-negative integers');
    if (!Array.isArray(o.losses) || o.losses.length === 0 || o.losses.length > 4096)
      throw new WireError('losses.losses must hold 1–4096 entries');
    const losses: Array<[number, number]> = [];
    for (const e of o.losses) {
      if (!Array.isArray(e) || e.length !== 2 || !isInt(e[0]) || typeof e[1] !== 'number' || !Number.isFinite(e[1]))
        throw new WireError('each loss must be [micro-batch, finite number]');
      losses.push([e[0], e[1]]);
    }
    return { type: 'losses', model: o.model, round: o.round, step: o.step, losses };
  }
  throw new WireError(`unknown request type ${JSON.stringify(o.type)}`);
}

/** Checks a status answer from another worker before anything is decided on it. */
export function parseStatus(raw: unknown): SyncStatus {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new WireError('status is not a JSON object');
  const o = raw as Record<string, unknown>;
  if (!isText(o.layout, 200_000)) throw new WireError('status.layout must be a string');
  if (!(PHASES as readonly unknown[]).includes(o.phase)) throw new WireError('status.phase is not a phase');
  if (!isInt(o.round) || !isInt(o.reported))
    throw new WireError('status.round and status.reported must be non-negative integers');
  if (!Array.isArray(o.held) || o.held.length > MAX_HELD)
    throw new WireError(`status.held must list at most ${MAX_HELD} stage states`);
  const held: HeldInfo[] = [];
  for (const h of o.held as unknown[]) {
    const x = h as Record<string, unknown>;
    if (
      typeof h !== 'object' ||
      h === null ||
      !isInt(x.stage) ||
      !isInt(x.step) ||
      typeof x.backup !== 'boolean' ||
      (x.stored !== undefined && typeof x.stored !== 'boolean')
    )
      throw new WireError('status.held entries must be { stage, step, backup, stored? }');
    held.push({ stage: x.stage, step: x.step, backup: x.backup, ...(x.stored ? { stored: true } : {}) });
  }
  let resume: SyncStatus['resume'];
  if (o.resume !== undefined) {
    const r = o.resume as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || !isInt(r.step) || !isInt(r.round, 1) || typeof r.fresh !== 'boolean')
      throw new WireError('status.resume must be { step, round ≥ 1, fresh }');
    resume = { step: r.step, round: r.round, fresh: r.fresh };
  }
  return { layout: o.layout, phase: o.phase as Phase, round: o.round, held, reported: o.reported, resume };
}

/** Answers sync requests with what the handler (the worker) says. */
export class SyncServer {
  private readonly node: Libp2p;
  private readonly handler: SyncHandler;
  private readonly log: (m: string) => void;
  private started = false;
  refused = 0;

  constructor(opts: { node: Libp2p; handler: SyncHandler; log?: (m: string) => void }) {
    this.node = opts.node;
    this.handler = opts.handler;
    this.log = opts.log ?? ((m) => console.warn(m));
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.node.handle(SYNC_PROTOCOL, (stream, connection) => this.serve(stream, connection));
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.node.unhandle(SYNC_PROTOCOL);
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString();
    const signal = withTimeout(10_000);
    const release = abortOn(stream, signal);
    const reader = new StreamReader(stream);
    try {
      let answer: unknown;
      try {
        const req = parseRequest(await reader.readJson(MAX_MESSAGE_BYTES, 'sync request'));
        if (req.type === 'status') answer = this.handler.status(from, req);
        else {
          this.handler.losses(from, req);
          answer = { ok: true };
        }
      } catch (e) {
        this.refused++;
        this.log(`sync: refused a request from ${from}: ${(e as Error).message}`);
        answer = { ok: false, error: (e as Error).message.slice(0, 300) };
      }
      await writeJson(stream, answer, signal);
      await stream.close({ signal });
    } catch (e) {
      stream.abort(e as Error);
    } finally {
      reader.dispose();
      release();
    }
  }
}

async function call(node: Libp2p, peer: PeerId | string, req: SyncRequest, signal: AbortSignal): Promise<unknown> {
  const stream = await openStream(node, peer, SYNC_PROTOCOL, signal);
  const release = abortOn(stream, signal);
  const reader = new StreamReader(stream);
  try {
    await writeJson(stream, req, signal);
    await stream.close({ signal });
    const answer = await reader.readJson(MAX_MESSAGE_BYTES, 'sync answer');
    const refusal = answer as { ok?: unknown; error?: unknown };
    if (refusal && refusal.ok === false) throw new WireError(`${peer.toString()} refused: ${String(refusal.error)}`);
    return answer;
  } catch (e) {
    stream.abort(e as Error);
    throw e;
  } finally {
    reader.dispose();
    release();
  }
}

export async function queryStatus(
  node: Libp2p,
  peer: PeerId | string,
  req: StatusRequest,
  opts: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<SyncStatus> {
  return parseStatus(await call(node, peer, req, withTimeout(opts.timeoutMs ?? 5000, opts.signal)));
}

export async function sendLosses(
  node: Libp2p,
  peer: PeerId | string,
  req: LossesRequest,
  opts: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<void> {
  await call(node, peer, req, withTimeout(opts.timeoutMs ?? 10_000, opts.signal));
}

/** Where replica 0 of the last stage collects the other replicas' losses of each step until it has all of them. */
export class LossInbox {
  private readonly steps = new Map<number, Map<number, number>>();
  private readonly waiters = new Set<() => void>();

  put(step: number, losses: Array<[number, number]>): void {
    const box = this.steps.get(step) ?? new Map<number, number>();
    for (const [m, loss] of losses) if (!box.has(m)) box.set(m, loss);
    this.steps.set(step, box);
    for (const w of [...this.waiters]) w();
  }

  /** Resolves with micro-batch → loss of `step` once `count` micro-batches are in; rejects on abort or timeout. */
  take(step: number, count: number, signal: AbortSignal, timeoutMs: number): Promise<Map<number, number>> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiters.delete(check);
      };
      const check = () => {
        const box = this.steps.get(step);
        if (!box || box.size < count) return;
        done();
        for (const s of [...this.steps.keys()]) if (s <= step) this.steps.delete(s);
        resolve(box);
      };
      const onAbort = () => {
        done();
        reject(new WireError(`losses of step ${step}: aborted (${String(signal.reason?.message ?? signal.reason)})`));
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new WireError(
            `losses of step ${step}: only ${this.steps.get(step)?.size ?? 0} of ${count} micro-batches within ` +
              `${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(check);
      check();
    });
  }

  clear(): void {
    this.steps.clear();
  }
}
