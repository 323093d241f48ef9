import { TesseraError } from '../errors.ts';

/**
 * Typed errors of the GPU runtime and ops. Every failure a caller can act on has its own class and a
 * `code`, so the app can tell a person what to do and a worker can decide whether to retry.
 */
export class TesseraGpuError extends TesseraError {}

/** No WebGPU at all (old browser, flag off, no Vulkan driver in Node). `advice` says what to do. */
export class WebGpuUnavailableError extends TesseraGpuError {
  readonly advice: string;
  constructor(message: string, advice: string) {
    super('webgpu-unavailable', message);
    this.advice = advice;
  }
}

/** A tensor's shape does not fit the op (e.g. matmul inner dimensions differ). */
export class ShapeError extends TesseraGpuError {
  constructor(message: string) {
    super('shape', message);
  }
}

/** A tensor has the wrong element type for the op (e.g. float token ids). */
export class DTypeError extends TesseraGpuError {
  constructor(message: string) {
    super('dtype', message);
  }
}

/** The request exceeds a limit of this device (buffer size, workgroups, storage buffers). */
export class LimitError extends TesseraGpuError {
  constructor(message: string) {
    super('limit', message);
  }
}

/** The device was lost (driver reset, tab backgrounded too long, destroy()). Create a new Gpu. */
export class DeviceLostError extends TesseraGpuError {
  constructor(reason: string) {
    super(
      'device-lost',
      `GPU device lost: ${reason.replace(/[.\s]+$/, '')}. Reload the page (or restart the worker) to get a new device.`,
    );
  }
}

/** WebGPU reported a validation/out-of-memory error for work we submitted. */
export class GpuValidationError extends TesseraGpuError {
  constructor(message: string) {
    super('validation', message);
  }
}

/**
 * A scalar argument an op cannot use (non-finite learning rate, step < 1, max norm ≤ 0), or tensors that
 * must be distinct but share a buffer (WebGPU cannot bind one buffer as writable and readable in a pass).
 */
export class ArgumentError extends TesseraGpuError {
  constructor(message: string) {
    super('argument', message);
  }
}

/** A token id outside [0, vocab). */
export class TokenRangeError extends TesseraGpuError {
  constructor(message: string) {
    super('token-range', message);
  }
}
