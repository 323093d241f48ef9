/**
 * Typed errors of the coordinator. Each carries the HTTP status the API answers with and a stable `code`,
 * so a worker can tell "fix your request" (4xx) from "try again" (5xx) without parsing messages.
 */
export class CoordinatorError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.name = new.target.name;
  }
}

/** The request is malformed or a field is out of range. */
export class BadRequestError extends CoordinatorError {
  constructor(message: string) {
    super(400, 'bad-request', message);
  }
}

/** A peer reported for a model it does not serve. */
export class ForbiddenError extends CoordinatorError {
  constructor(message: string) {
    super(403, 'forbidden', message);
  }
}

/** Unknown model, peer or route. */
export class NotFoundError extends CoordinatorError {
  constructor(message: string) {
    super(404, 'not-found', message);
  }
}

export class MethodNotAllowedError extends CoordinatorError {
  constructor(message: string) {
    super(405, 'method-not-allowed', message);
  }
}

/** The request conflicts with stored state (duplicate model id, heartbeat of a peer marked gone). */
export class ConflictError extends CoordinatorError {
  constructor(message: string) {
    super(409, 'conflict', message);
  }
}

export class PayloadTooLargeError extends CoordinatorError {
  constructor(message: string) {
    super(413, 'payload-too-large', message);
  }
}

/** The database cannot be used (newer schema, corrupt row). */
export class StoreError extends CoordinatorError {
  constructor(message: string) {
    super(500, 'store', message);
  }
}

/** A signature does not verify (receipt batches answer per receipt instead) or an admin token is missing. */
export class UnauthorizedError extends CoordinatorError {
  constructor(message: string) {
    super(401, 'unauthorized', message);
  }
}

/** A dependency (the chain) is not configured or not answering. */
export class UnavailableError extends CoordinatorError {
  constructor(message: string) {
    super(503, 'unavailable', message);
  }
}

/** The requester's deposit does not cover the request: nothing was run or charged. */
export class PaymentRequiredError extends CoordinatorError {
  constructor(message: string) {
    super(402, 'payment-required', message);
  }
}
