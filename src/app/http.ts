/** JSON over fetch to the coordinator (same origin: the app proxies /api and /v1), shared by the pages' API clients. */

import { TesseraError } from '../errors.ts';

/**
 * An answer other than 2xx, or none, with the coordinator's reason and code when it gave one. Without one the
 * code is this client's: 'unreachable' (no answer, status 0) or 'bad-answer' (no JSON, or not the JSON expected).
 */
export class ApiError extends TesseraError {
  readonly status: number;
  /** `code` is the coordinator's own (worth showing a person), not one this client chose. */
  readonly fromCoordinator: boolean;
  constructor(message: string, status: number, code?: string) {
    super(code ?? (status === 0 ? 'unreachable' : 'bad-answer'), message);
    this.status = status;
    this.fromCoordinator = code !== undefined;
  }
}

export interface JsonClient {
  /** The JSON answer of `path`; ApiError with the coordinator's reason on a non-2xx answer or none at all. */
  call<T>(path: string, init?: RequestInit): Promise<T>;
  /** A POST of `body` as JSON. */
  post(body: unknown): RequestInit;
}

/** `fetcher` and `base` are for tests; the pages use the global fetch, same origin. */
export function jsonClient(fetcher: typeof fetch = (...a) => fetch(...a), base = ''): JsonClient {
  return {
    async call<T>(path: string, init?: RequestInit): Promise<T> {
      let res: Response;
      try {
        res = await fetcher(`${base}${path}`, init);
      } catch (e) {
        throw new ApiError(`cannot reach the coordinator (${(e as Error).message})`, 0);
      }
      const body = (await res.json().catch(() => undefined)) as (T & { error?: string; code?: string }) | undefined;
      if (!res.ok) throw new ApiError(body?.error ?? `${path} answered ${res.status}`, res.status, body?.code);
      if (body === undefined) throw new ApiError(`${path} answered with no JSON`, res.status);
      return body;
    },
    post: (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  };
}
