import { TesseraError } from '../errors.ts';

/**
 * Typed errors of the data layer (corpus, tokenizer, batches). Each has a `code` so a worker or the app can
 * tell bad arguments (fix the call) from a bad file (re-download it) without parsing messages.
 */
export class DataError extends TesseraError {}

/** A vocabulary size we cannot train, or for which no tokenizer file exists. */
export class VocabSizeError extends DataError {
  constructor(message: string) {
    super('vocab-size', message);
  }
}

/** A tokenizer.json that is not a byte-level BPE in the Hugging Face format we read. */
export class TokenizerFormatError extends DataError {
  constructor(message: string) {
    super('tokenizer-format', message);
  }
}

/** A batch request that cannot be served: bad batch size, sequence longer than the stream, index out of range. */
export class BatchError extends DataError {
  constructor(message: string) {
    super('batch', message);
  }
}

/** Corpus files missing or malformed. */
export class CorpusError extends DataError {
  constructor(message: string) {
    super('corpus', message);
  }
}
