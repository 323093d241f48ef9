/** JSON over fetch to the coordinator (same origin: the app proxies /api and /v1), shared by the pages' API clients. */

/** An answer other than 2xx, with the coordinator's reason and code when it gave one. */
export class ApiError extends Error {
  status: number;
  code?: string;
  constructor(message: string, status: number, code?: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
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
