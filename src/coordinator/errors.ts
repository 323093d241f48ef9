import { TesseraError } from '../errors.ts';

/**
 * The coordinator's errors as data: each kind is the HTTP status the API answers with and the stable `code`
 * in the JSON answer, so a worker can tell "fix your request" (4xx) from "try again" (5xx) without parsing
 * messages. One class carries them all: the kinds differ in nothing but these two values.
 */
export const HTTP = {
  /** The request is malformed or a field is out of range. */
  badRequest: { status: 400, code: 'bad-request' },
  /** A signature does not verify (receipt batches answer per receipt instead) or an admin token is missing. */
  unauthorized: { status: 401, code: 'unauthorized' },
  /** The requester's deposit does not cover the request: nothing was run or charged. */
  paymentRequired: { status: 402, code: 'payment-required' },
  /** A peer reported for a model it does not serve. */
  forbidden: { status: 403, code: 'forbidden' },
  /** Unknown model, peer or route. */
  notFound: { status: 404, code: 'not-found' },
  methodNotAllowed: { status: 405, code: 'method-not-allowed' },
  /** The request conflicts with stored state (duplicate model id, heartbeat of a peer marked gone). */
  conflict: { status: 409, code: 'conflict' },
  payloadTooLarge: { status: 413, code: 'payload-too-large' },
  /** A write whose Content-Type is not application/json (what a foreign page could send without a preflight). */
  unsupportedMediaType: { status: 415, code: 'unsupported-media-type' },
  /** A Host header that names another server (DNS rebinding, or a proxy that forwards its own Host). */
  misdirected: { status: 421, code: 'misdirected-request' },
  /** Over a per-IP rate limit: the answer says when to retry (Retry-After). */
  tooManyRequests: { status: 429, code: 'too-many-requests' },
  /** The database cannot be used (newer schema, corrupt row). */
  store: { status: 500, code: 'store' },
  /** A dependency (the chain) is not configured or not answering. */
  unavailable: { status: 503, code: 'unavailable' },
  /** The database's disk is full (SQLITE_FULL): retry the request once space returns (no restart needed). */
  diskFull: { status: 507, code: 'disk-full' },
} as const;

export type HttpKind = keyof typeof HTTP;

/** An answer the coordinator gives on purpose: `new HttpError('notFound', 'unknown model x')`. */
export class HttpError extends TesseraError {
  readonly kind: HttpKind;
  readonly status: number;
  constructor(kind: HttpKind, message: string, options?: ErrorOptions) {
    super(HTTP[kind].code, message, options);
    this.kind = kind;
    this.status = HTTP[kind].status;
  }
}

/** True when `e` is an HttpError of `kind` (for a catch that handles one kind and rethrows the rest). */
export const isHttpError = (e: unknown, kind: HttpKind): e is HttpError => e instanceof HttpError && e.kind === kind;

/** SQLite's primary result code for "database or disk is full" (extended codes keep it in the low byte). */
const SQLITE_FULL = 13;

/**
 * The answer for a failure that is not an HttpError: a full disk (node:sqlite's ERR_SQLITE_ERROR with SQLITE_FULL)
 * is `diskFull`, which says what to do; anything else is undefined (a 500).
 */
export function storeFailure(e: unknown): HttpError | undefined {
  const err = e as { code?: unknown; errcode?: unknown; message?: unknown } | null;
  if (err?.code !== 'ERR_SQLITE_ERROR' || typeof err.errcode !== 'number' || (err.errcode & 0xff) !== SQLITE_FULL)
    return undefined;
  return new HttpError(
    'diskFull',
    "the coordinator's disk is full (SQLite: database or disk is full): the request was not completed; free " +
      "space on the coordinator's disk (or raise its quota) and retry: it recovers by itself, no restart needed",
    { cause: e },
  );
}
