/**
 * The coordinator's HTTP/JSON API as a peer sees it (src/coordinator/API.md). fetch only, so the same client
 * serves a browser tab and a Node worker.
 */
import { TesseraError } from '../errors.ts';
import type {
  JoinAnswer,
  LeaveAnswer,
  LinkReport,
  MetricKind,
  MetricRecord,
  ModelDetail,
  RelayInfo,
} from '../wire/index.ts';

// The wire shapes this client answers with, under the names its callers import.
export type {
  Assignment,
  JoinAnswer,
  LeaveAnswer,
  LinkReport,
  ModelDetail,
  PipelinePeer,
  RelayInfo,
} from '../wire/index.ts';

/**
 * The coordinator answered with an error: `status`, and as `code` the one in its JSON answer (the kinds in
 * coordinator/errors.ts: 'conflict', 'not-found', …). Without one the code is this client's: 'bad-answer' (not
 * JSON, or no code in it) or 'unreachable' (no answer after the retries, status 0).
 */
export class CoordinatorError extends TesseraError {
  readonly status: number;
  constructor(status: number, message: string, code = 'bad-answer') {
    super(code, message);
    this.status = status;
  }

  /**
   * The coordinator cannot answer now, but may later: no answer at all (status 0), a 5xx (507: its disk is full)
   * or 429/408. Worth waiting out; any other 4xx is an answer with a reason, final.
   */
  get transient(): boolean {
    return this.status === 0 || this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** `e` is a CoordinatorError the coordinator may not repeat later (see CoordinatorError.transient). */
export function transientError(e: unknown): e is CoordinatorError {
  return e instanceof CoordinatorError && e.transient;
}

/** A change of the coordinator's reachability as this client saw it. */
export type OutageEvent =
  | { type: 'down'; since: number; error: CoordinatorError }
  | { type: 'up'; since: number; ms: number };

/** How long one request may take before it counts as unanswered (a coordinator stopped, not refusing). */
const REQUEST_TIMEOUT_MS = 30_000;
/** Back-off between tries of a request waiting out an outage: doubling from the first to the cap, jittered. */
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 10_000;

export class CoordinatorClient {
  readonly url: string;
  /** Since when (ms since the epoch) the coordinator has not answered this client, or null while it answers. */
  down: number | null = null;
  /** Outages seen so far: a caller compares two readings to tell whether one happened in between. */
  outages = 0;
  private readonly outageListeners = new Set<(e: OutageEvent) => void>();
  /** Waits of untilAnswered, woken as soon as any request is answered again. */
  private readonly wakers = new Set<() => void>();

  constructor(url: string) {
    this.url = url.replace(/\/$/, '');
  }

  /** Told once when the coordinator stops answering (transport error or 5xx) and once when it answers again. */
  onOutage(fn: (e: OutageEvent) => void): () => void {
    this.outageListeners.add(fn);
    return () => this.outageListeners.delete(fn);
  }

  private emit(e: OutageEvent): void {
    for (const fn of this.outageListeners) fn(e);
  }

  private sawDown(error: CoordinatorError): void {
    if (this.down !== null) return;
    this.down = Date.now();
    this.outages++;
    this.emit({ type: 'down', since: this.down, error });
  }

  private sawUp(): void {
    if (this.down !== null) {
      const since = this.down;
      this.down = null;
      this.emit({ type: 'up', since, ms: Date.now() - since });
    }
    for (const wake of this.wakers) wake();
  }

  /**
   * `fn` (a request, or several) until it gets an answer: through an outage (transport errors, 5xx, 507) it
   * tries again after a capped exponential back-off with jitter (0.5 s doubling to 10 s), and at once when any
   * other request of this client — a heartbeat — is answered again. A 4xx is thrown as before, so is anything
   * that is no CoordinatorError; so is the last error once `stopped()` says so, or `signal` aborts.
   */
  async untilAnswered<T>(fn: () => Promise<T>, o: { stopped?: () => boolean; signal?: AbortSignal } = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!transientError(e) || o.stopped?.() || o.signal?.aborted) throw e;
        const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 10));
        await this.nextChance(cap / 2 + (Math.random() * cap) / 2, o.signal);
      }
    }
  }

  /** Resolves after `ms`, or earlier once a request is answered or `signal` aborts. */
  private nextChance(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * One request. A request that never reached an answer (connection refused or reset: a coordinator restarting or
   * starved for CPU; or none within 30 s) is tried again, 3 times in all with growing pauses; an answer, even an
   * error, is final. Each outcome updates `down` (a 5xx counts as down: the coordinator cannot serve).
   */
  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    try {
      const out = await this.request<T>(method, path, body);
      this.sawUp();
      return out;
    } catch (e) {
      if (transientError(e)) this.sawDown(e);
      else if (e instanceof CoordinatorError && e.status > 0) this.sawUp();
      throw e;
    }
  }

  private async request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res: Response | undefined;
    for (let attempt = 1; !res; attempt++) {
      try {
        res = await fetch(`${this.url}${path}`, {
          method,
          headers: body === undefined ? undefined : { 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
      } catch (e) {
        if (attempt >= 3)
          throw new CoordinatorError(
            0,
            `${method} ${path}: the coordinator at ${this.url} did not answer (${(e as Error).message}, ` +
              `${attempt} tries)`,
            'unreachable',
          );
        await new Promise((r) => setTimeout(r, 250 * attempt));
      }
    }
    // A connection cut while the answer streams in is no answer either.
    const text = await res.text().catch((e: Error) => {
      throw new CoordinatorError(0, `${method} ${path}: the answer was cut off (${e.message})`, 'unreachable');
    });
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new CoordinatorError(res.status, `${method} ${path}: answer is not JSON (${text.slice(0, 80)})`);
    }
    if (!res.ok) {
      const answer = json as { error?: string; code?: unknown };
      const code = typeof answer.code === 'string' && answer.code ? answer.code : undefined;
      throw new CoordinatorError(res.status, `${method} ${path}: ${answer.error ?? res.statusText}`, code);
    }
    return json as T;
  }

  health(): Promise<{ ok: boolean; relay: RelayInfo | null; heartbeatMs: number }> {
    return this.call('GET', '/api/health');
  }

  join(peerId: string, tokensPerSecond: number, kind: 'node' | 'browser', preferModel?: string): Promise<JoinAnswer> {
    return this.call('POST', '/api/peers/join', {
      peerId,
      kind,
      tokensPerSecond,
      ...(preferModel ? { preferModel } : {}),
    });
  }

  /** `links`: per connected peer, tensor bytes sent to / received from it and the round trip (at most 64). */
  heartbeat(peerId: string, stats?: Record<string, number>, links?: LinkReport[]): Promise<JoinAnswer> {
    return this.call('POST', '/api/peers/heartbeat', {
      peerId,
      ...(stats ? { stats } : {}),
      ...(links && links.length > 0 ? { links: links.slice(0, 64) } : {}),
    });
  }

  /**
   * Leaves the swarm. With `handoff`, first only the pipeline: the peer stays alive (heartbeating, its answers
   * 'wait' with `handoff`) and is listed to the others as a departing holder for up to 60 s, so they can fetch its
   * stage; then a leave without handoff ends it (src/coordinator/departures.ts).
   */
  leave(peerId: string, o: { handoff?: boolean } = {}): Promise<LeaveAnswer> {
    return this.call('POST', '/api/peers/leave', o.handoff ? { peerId, handoff: true } : { peerId });
  }

  model(id: string): Promise<{ model: ModelDetail }> {
    return this.call('GET', `/api/models/${encodeURIComponent(id)}`);
  }

  reportStep(
    modelId: string,
    r: { step: number; loss: number; tokens?: number; kind?: MetricKind; peerId?: string; replicas?: number[] },
  ): Promise<unknown> {
    return this.call('POST', `/api/models/${encodeURIComponent(modelId)}/metrics`, r);
  }

  /** Records a step that produced no usable loss (non-finite) as failed; 409 when the step is already recorded. */
  reportFailedStep(modelId: string, step: number, peerId: string): Promise<unknown> {
    return this.call('POST', `/api/models/${encodeURIComponent(modelId)}/metrics`, {
      step,
      status: 'failed',
      peerId,
    });
  }

  metrics(modelId: string, since = 0): Promise<{ metrics: MetricRecord[]; next: number }> {
    return this.call('GET', `/api/models/${encodeURIComponent(modelId)}/metrics?since=${since}`);
  }
}
