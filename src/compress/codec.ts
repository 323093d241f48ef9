/**
 * A codec for tensors crossing a stage boundary (activations forward, activation gradients backward).
 * Codecs work on host arrays: a boundary tensor is read back from the GPU to be sent anyway.
 * `context` carries what both sides know without sending it: the micro-batch's token ids (the subspace codec
 * rebuilds h = U·c + E_fixed[tokens] from them) and the direction.
 */
import { TesseraError } from '../errors.ts';

export interface CodecContext {
  /** Token ids [rows] of the micro-batch (every stage receives them with the activations). */
  ids: Int32Array;
  /** Which way the tensor travels. */
  kind: 'act' | 'grad';
}

export interface Codec {
  /** Name on the wire, e.g. 'none', 'int8', 'subspace', 'subspace+int8'. */
  readonly name: string;
  encode(x: Float32Array, shape: readonly [number, number], ctx: CodecContext): Uint8Array;
  decode(bytes: Uint8Array, shape: readonly [number, number], ctx: CodecContext): Float32Array;
  /** Bytes this codec puts on the wire per token (row) for a given width, excluding token ids. */
  bytesPerToken(width: number, kind: 'act' | 'grad'): number;
}

export class CodecError extends TesseraError {
  constructor(message: string, options?: ErrorOptions) {
    super('codec', message, options);
  }
}
