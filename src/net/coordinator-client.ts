/**
 * The coordinator's HTTP/JSON API as a peer sees it (src/coordinator/API.md). fetch only, so the same client
 * serves a browser tab and a Node worker.
 */
import { TesseraError } from '../errors.ts';
import type { JoinAnswer, LinkReport, MetricKind, MetricRecord, ModelDetail, RelayInfo } from '../wire/index.ts';

// The wire shapes this client answers with, under the names its callers import.
export type { Assignment, JoinAnswer, LinkReport, ModelDetail, PipelinePeer, RelayInfo } from '../wire/index.ts';

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
}

export class CoordinatorClient {
  readonly url: string;

  constructor(url: string) {
    this.url = url.replace(/\/$/, '');
  }

  /**
   * One request. A request that never reached an answer (connection refused or reset: a coordinator restarting or
   * starved for CPU) is tried again, 3 times in all with growing pauses; an answer, even an error, is final.
   */
  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    let res: Response | undefined;
    for (let attempt = 1; !res; attempt++) {
      try {
        res = await fetch(`${this.url}${path}`, {
          method,
          headers: body === undefined ? undefined : { 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
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
    const text = await res.text();
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

  leave(peerId: string): Promise<unknown> {
    return this.call('POST', '/api/peers/leave', { peerId });
  }

  model(id: string): Promise<{ model: ModelDetail }> {
    return this.call('GET', `/api/models/${encodeURIComponent(id)}`);
  }

  reportStep(
    modelId: string,
    r: { step: number; loss: number; tokens?: number; kind?: MetricKind; peerId?: string },
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
