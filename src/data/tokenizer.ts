/**
 * Byte-level BPE tokenizer (GPT-2 scheme), stored as a Hugging Face `tokenizer.json`. Runs in the browser
 * and in Node; training lives in bpe-train.ts.
 *
 * Scheme: text → split on the special token <|endoftext|> → pre-tokenise each piece with the GPT-2 regex
 * (PRETOKENIZE_PATTERN) → UTF-8 bytes of each pre-token → each byte as one printable character
 * (BYTE_TO_UNICODE, GPT-2's `bytes_to_unicode`: space is 'Ġ', newline 'Ċ') → merges applied by rank, the
 * lowest-ranked adjacent pair first, leftmost first among equal pairs, until none applies → ids. Decoding
 * maps ids to their characters, the characters back to bytes, and the bytes through UTF-8. Every string
 * therefore encodes (all 256 bytes are tokens) and decode(encode(s)) === s for well-formed strings (lone
 * UTF-16 surrogates cannot be UTF-8 encoded and come back as U+FFFD, as with TextEncoder).
 *
 * File format (Hugging Face tokenizers ≥ 0.13, read by `tokenizers.Tokenizer.from_file` and transformers.js):
 *   {
 *     "version": "1.0", "truncation": null, "padding": null,
 *     "added_tokens": [{ "id": V-1, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
 *                        "rstrip": false, "normalized": false, "special": true }],
 *     "normalizer": null,
 *     "pre_tokenizer": { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true },
 *     "post_processor": null,
 *     "decoder": { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true },
 *     "model": { "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
 *                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
 *                "vocab": { "<token chars>": id, … }, "merges": ["Ġ t", "h e", …] }
 *   }
 * Our files: ids 0–255 are the single bytes in byte order, then one id per merge result in merge order,
 * and the last id (vocabSize − 1) is <|endoftext|>. A merge "x y" (rank = its line index) joins the tokens
 * x and y into the vocabulary token x+y. fromJSON also reads other byte-level BPE files of this shape
 * (e.g. GPT-2's), as long as they have <|endoftext|>.
 */
import { TokenizerFormatError, VocabSizeError } from './errors.ts';
import { utf8Length } from './corpus.ts';

export const EOT = '<|endoftext|>';

/** Vocabulary sizes our files and the batch streams support: ids must fit a Uint16. */
export const MIN_VOCAB = 257;
export const MAX_VOCAB = 65536;

/** GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the rest to U+0100 upwards. */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return table;
})();

export const UNICODE_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_UNICODE.map((c, b) => [c, b]));

/**
 * GPT-2's pre-tokenisation regex as Hugging Face's ByteLevel pre-tokenizer runs it. `\s` is spelled
 * \p{White_Space} because JS's `\s` differs from the Unicode White_Space set the Rust regex uses
 * (JS adds U+FEFF and omits U+0085).
 */
export const PRETOKENIZE_PATTERN = new RegExp(
  [
    "'s|'t|'re|'ve|'m|'ll|'d",
    String.raw` ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+`,
    String.raw`\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`,
  ].join('|'),
  'gu',
);

export function pretokenize(text: string): string[] {
  return text.match(PRETOKENIZE_PATTERN) ?? [];
}

/** Natural-log loss summed over predicted tokens → bits per UTF-8 byte of the text those tokens cover. */
export function bitsPerByte(totalNatsLoss: number, bytes: number): number {
  if (!(bytes > 0)) throw new RangeError(`bitsPerByte: bytes must be > 0, got ${bytes}`);
  return totalNatsLoss / (bytes * Math.LN2);
}

export interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };

export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: AddedToken[];
  normalizer: null;
  pre_tokenizer: typeof BYTE_LEVEL;
  post_processor: null;
  decoder: typeof BYTE_LEVEL;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    vocab: Record<string, number>;
    merges: string[];
  };
}

export interface TokenizerParts {
  /** Token string of every id (byte-level characters; special tokens as their plain content). */
  tokens: readonly string[];
  /** Merges in rank order, as pairs of token strings. */
  merges: ReadonlyArray<readonly [string, string]>;
  /** Ids of special tokens (must include <|endoftext|>). */
  specialIds: readonly number[];
  addPrefixSpace?: boolean;
}

const utf8Encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF in the text instead of swallowing it.
const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });

/** Growable Int32 buffer; encodes straight into it to avoid per-word arrays. */
class IdSink {
  buf: Int32Array;
  length = 0;
  constructor(capacity: number) {
    this.buf = new Int32Array(Math.max(16, capacity));
  }
  push(id: number): void {
    if (this.length === this.buf.length) this.grow(this.length + 1);
    this.buf[this.length++] = id;
  }
  pushAll(ids: Int32Array): void {
    if (this.length + ids.length > this.buf.length) this.grow(this.length + ids.length);
    this.buf.set(ids, this.length);
    this.length += ids.length;
  }
  private grow(min: number): void {
    const next = new Int32Array(Math.max(min, this.buf.length * 2));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  result(): Int32Array {
    return this.buf.slice(0, this.length);
  }
}

const CACHE_LIMIT = 200_000;

export class Tokenizer {
  readonly vocabSize: number;
  readonly eotId: number;
  readonly addPrefixSpace: boolean;
  private readonly tokens: readonly string[];
  private readonly tokenIds: Map<string, number>;
  private readonly mergeList: ReadonlyArray<readonly [string, string]>;
  /** key a·vocabSize + b → rank; mergeResult[rank] is the id of the joined token. */
  private readonly mergeRank: Map<number, number>;
  private readonly mergeResult: Int32Array;
  private readonly byteIds: Int32Array;
  private readonly tokenBytes: Uint8Array[];
  private readonly specials: Map<string, number>;
  private readonly specialSplit: RegExp;
  private readonly cache = new Map<string, Int32Array>();
  private fingerprintValue: string | undefined;

  constructor(parts: TokenizerParts) {
    const { tokens, merges, specialIds } = parts;
    const n = tokens.length;
    if (n < MIN_VOCAB || n > MAX_VOCAB) {
      throw new VocabSizeError(`vocabulary has ${n} tokens; supported: ${MIN_VOCAB}…${MAX_VOCAB}`);
    }
    this.vocabSize = n;
    this.tokens = tokens;
    this.addPrefixSpace = parts.addPrefixSpace ?? false;
    this.specials = new Map();
    for (const id of specialIds) {
      if (!Number.isInteger(id) || id < 0 || id >= n)
        throw new TokenizerFormatError(`special token id ${id} outside the vocabulary`);
      this.specials.set(tokens[id], id);
    }
    const eot = this.specials.get(EOT);
    if (eot === undefined) throw new TokenizerFormatError(`tokenizer has no special token ${EOT}`);
    this.eotId = eot;
    const escaped = [...this.specials.keys()]
      .sort((a, b) => b.length - a.length)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.specialSplit = new RegExp(`(${escaped.join('|')})`);

    this.tokenIds = new Map();
    this.tokenBytes = new Array(n);
    const specialIdSet = new Set(specialIds);
    for (let id = 0; id < n; id++) {
      const t = tokens[id];
      if (typeof t !== 'string' || t.length === 0) throw new TokenizerFormatError(`id ${id} has no token`);
      if (this.tokenIds.has(t))
        throw new TokenizerFormatError(
          `token ${JSON.stringify(t)} appears twice (ids ${this.tokenIds.get(t)} and ${id})`,
        );
      this.tokenIds.set(t, id);
      if (specialIdSet.has(id)) {
        this.tokenBytes[id] = utf8Encoder.encode(t);
        continue;
      }
      const bytes = new Uint8Array(t.length);
      for (let i = 0; i < t.length; i++) {
        const b = UNICODE_TO_BYTE.get(t[i]);
        if (b === undefined)
          throw new TokenizerFormatError(
            `token ${JSON.stringify(t)} (id ${id}) is not byte-level: ${JSON.stringify(t[i])}`,
          );
        bytes[i] = b;
      }
      this.tokenBytes[id] = bytes;
    }
    this.byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const id = this.tokenIds.get(BYTE_TO_UNICODE[b]);
      if (id === undefined)
        throw new TokenizerFormatError(`byte 0x${b.toString(16)} has no token: not every text could be encoded`);
      this.byteIds[b] = id;
    }

    this.mergeList = merges;
    this.mergeRank = new Map();
    this.mergeResult = new Int32Array(merges.length);
    merges.forEach(([x, y], rank) => {
      const a = this.tokenIds.get(x);
      const b = this.tokenIds.get(y);
      const c = this.tokenIds.get(x + y);
      if (a === undefined || b === undefined || c === undefined) {
        throw new TokenizerFormatError(
          `merge ${rank} "${x} ${y}": ${a === undefined ? x : b === undefined ? y : x + y} is not in the vocabulary`,
        );
      }
      const key = a * n + b;
      // A repeated merge keeps its first (lowest) rank, as Hugging Face does.
      if (!this.mergeRank.has(key)) this.mergeRank.set(key, rank);
      this.mergeResult[rank] = c;
    });
  }

  /** Reads a Hugging Face tokenizer.json (object or JSON text) holding a byte-level BPE. */
  static fromJSON(json: unknown): Tokenizer {
    const j = (typeof json === 'string' ? parseJson(json) : json) as Partial<TokenizerJson> | null;
    if (!j || typeof j !== 'object') throw new TokenizerFormatError('tokenizer.json: not an object');
    const model = j.model as Partial<TokenizerJson['model']> | undefined;
    if (model?.type !== 'BPE')
      throw new TokenizerFormatError(`tokenizer.json: model.type must be "BPE", got ${JSON.stringify(model?.type)}`);
    if (!model.vocab || typeof model.vocab !== 'object')
      throw new TokenizerFormatError('tokenizer.json: model.vocab missing');
    if (!Array.isArray(model.merges)) throw new TokenizerFormatError('tokenizer.json: model.merges missing');
    const pre = j.pre_tokenizer as
      | { type?: string; add_prefix_space?: boolean; use_regex?: boolean }
      | null
      | undefined;
    if (pre?.type !== 'ByteLevel' || pre.use_regex === false) {
      throw new TokenizerFormatError(
        `tokenizer.json: pre_tokenizer must be ByteLevel with use_regex, got ${JSON.stringify(pre?.type ?? pre)}`,
      );
    }
    const dec = j.decoder as { type?: string } | null | undefined;
    if (dec?.type !== 'ByteLevel')
      throw new TokenizerFormatError(
        `tokenizer.json: decoder must be ByteLevel, got ${JSON.stringify(dec?.type ?? dec)}`,
      );
    if (j.normalizer) throw new TokenizerFormatError('tokenizer.json: normalizers are not supported');

    const tokens: string[] = [];
    const put = (t: string, id: unknown): void => {
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= MAX_VOCAB)
        throw new TokenizerFormatError(`tokenizer.json: bad id ${JSON.stringify(id)} for ${JSON.stringify(t)}`);
      const prev = tokens[id as number];
      if (prev !== undefined && prev !== t)
        throw new TokenizerFormatError(
          `tokenizer.json: id ${id} is both ${JSON.stringify(prev)} and ${JSON.stringify(t)}`,
        );
      tokens[id as number] = t;
    };
    for (const [t, id] of Object.entries(model.vocab)) put(t, id);
    const specialIds: number[] = [];
    for (const a of j.added_tokens ?? []) {
      if (!a || typeof a.content !== 'string') throw new TokenizerFormatError('tokenizer.json: bad added_tokens entry');
      put(a.content, a.id);
      if (a.special) specialIds.push(a.id);
    }
    for (let id = 0; id < tokens.length; id++) {
      if (tokens[id] === undefined)
        throw new TokenizerFormatError(`tokenizer.json: ids are not contiguous (no token has id ${id})`);
    }
    const merges = model.merges.map((m: unknown, i: number): [string, string] => {
      const pair = typeof m === 'string' ? m.split(' ') : m;
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        throw new TokenizerFormatError(`tokenizer.json: merge ${i} is not "a b" or [a, b]: ${JSON.stringify(m)}`);
      }
      return [pair[0], pair[1]];
    });
    return new Tokenizer({ tokens, merges, specialIds, addPrefixSpace: pre.add_prefix_space ?? false });
  }

  toJSON(): TokenizerJson {
    const vocab: Record<string, number> = {};
    const added: AddedToken[] = [];
    for (let id = 0; id < this.vocabSize; id++) {
      const t = this.tokens[id];
      vocab[t] = id;
      if (this.specials.get(t) === id) {
        added.push({
          id,
          content: t,
          single_word: false,
          lstrip: false,
          rstrip: false,
          normalized: false,
          special: true,
        });
      }
    }
    const byteLevel = { ...BYTE_LEVEL, add_prefix_space: this.addPrefixSpace };
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: byteLevel,
      post_processor: null,
      decoder: { ...BYTE_LEVEL },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: this.mergeList.map(([a, b]) => `${a} ${b}`),
      },
    };
  }

  /** File text: the JSON with one merge per line (diffable), UTF-8. */
  serialize(): string {
    const j = this.toJSON();
    const { vocab: _vocab, merges, ...modelRest } = j.model;
    const head = JSON.stringify({ ...j, model: { ...modelRest, vocab: {}, merges: [] } }, null, 2);
    // Id order (an object would put integer-like tokens such as "0" first).
    const vocabLines = this.tokens.map((t, id) => `      ${JSON.stringify(t)}: ${id}`);
    const mergeLines = merges.map((m) => `      ${JSON.stringify(m)}`);
    return (
      head
        .replace('"vocab": {}', () => `"vocab": {\n${vocabLines.join(',\n')}\n    }`)
        .replace('"merges": []', () => `"merges": [\n${mergeLines.join(',\n')}\n    ]`) + '\n'
    );
  }

  get merges(): ReadonlyArray<readonly [string, string]> {
    return this.mergeList;
  }

  /** Byte-level token string of an id (e.g. 'Ġthe'); special tokens as their content. */
  token(id: number): string {
    this.checkId(id);
    return this.tokens[id];
  }

  /** Id of a token string, or undefined. */
  id(token: string): number | undefined {
    return this.tokenIds.get(token);
  }

  /** UTF-8 bytes the id stands for (0 for special tokens: they are not text). */
  byteLength(id: number): number {
    this.checkId(id);
    return this.specials.has(this.tokens[id]) ? 0 : this.tokenBytes[id].length;
  }

  /** Text bytes covered by a sequence of ids (special tokens count 0): the denominator of bits per byte. */
  countBytes(ids: ArrayLike<number>): number {
    let total = 0;
    for (let i = 0; i < ids.length; i++) total += this.byteLength(ids[i]);
    return total;
  }

  /** Stable short hash of vocabulary and merges (cache keys). */
  get fingerprint(): string {
    if (this.fingerprintValue === undefined) {
      let h = 0x811c9dc5;
      const mix = (s: string): void => {
        for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
        h = Math.imul(h ^ 0x0a, 0x01000193);
      };
      for (const t of this.tokens) mix(t);
      for (const [a, b] of this.mergeList) mix(a + ' ' + b);
      this.fingerprintValue = `${this.vocabSize}-${(h >>> 0).toString(16).padStart(8, '0')}`;
    }
    return this.fingerprintValue;
  }

  /**
   * Token ids of `text`. With `allowSpecial` (the default, as Hugging Face does) a literal "<|endoftext|>"
   * in the text becomes the special id; without, it is encoded as ordinary text.
   */
  encode(text: string, options: { allowSpecial?: boolean } = {}): Int32Array {
    const sink = new IdSink(text.length >> 1);
    this.encodeInto(text, sink, options.allowSpecial ?? true);
    return sink.result();
  }

  /** @internal encodeDocuments uses this to fill one stream without copies. */
  encodeInto(text: string, sink: IdSink, allowSpecial: boolean): void {
    if (allowSpecial && this.specials.size > 0 && text.includes('<')) {
      const pieces = text.split(this.specialSplit);
      for (let i = 0; i < pieces.length; i++) {
        if (i % 2 === 1) sink.push(this.specials.get(pieces[i])!);
        else this.encodeOrdinary(pieces[i], sink);
      }
    } else {
      this.encodeOrdinary(text, sink);
    }
  }

  private encodeOrdinary(text: string, sink: IdSink): void {
    if (text === '') return;
    if (this.addPrefixSpace && !/^\p{White_Space}/u.test(text)) text = ' ' + text;
    for (const m of text.matchAll(PRETOKENIZE_PATTERN)) {
      const word = m[0];
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.bpe(utf8Encoder.encode(word));
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      if (ids.length === 1) sink.push(ids[0]);
      else sink.pushAll(ids);
    }
  }

  /**
   * Applies the merges to one pre-token: repeatedly joins the adjacent pair with the lowest rank (leftmost
   * first), like Hugging Face's Word::merge_all. A heap of (rank, position) keeps long inputs O(n log n).
   */
  private bpe(bytes: Uint8Array): Int32Array {
    const n = bytes.length;
    const sym = new Int32Array(n);
    for (let i = 0; i < n; i++) sym[i] = this.byteIds[bytes[i]];
    if (n < 2) return sym;
    const V = this.vocabSize;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Entries rank·2^32 + position, a min-heap: lowest rank first, then leftmost.
    const heap: number[] = [];
    const push = (v: number): void => {
      let i = heap.length;
      heap.push(v);
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= v) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = v;
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap.pop()!;
      if (heap.length > 0) {
        let i = 0;
        const len = heap.length;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= len) break;
          const r = l + 1;
          const c = r < len && heap[r] < heap[l] ? r : l;
          if (heap[c] >= last) break;
          heap[i] = heap[c];
          i = c;
        }
        heap[i] = last;
      }
      return top;
    };
    const TWO32 = 4294967296;
    const consider = (i: number): void => {
      const j = next[i];
      if (j < 0) return;
      const r = this.mergeRank.get(sym[i] * V + sym[j]);
      if (r !== undefined) push(r * TWO32 + i);
    };
    for (let i = 0; i < n - 1; i++) consider(i);
    let count = n;
    while (heap.length > 0) {
      const e = pop();
      const i = e % TWO32;
      const rank = (e - i) / TWO32;
      const j = next[i];
      if (!alive[i] || j < 0) continue;
      // Stale entry: the pair at i changed since it was pushed.
      if (this.mergeRank.get(sym[i] * V + sym[j]) !== rank) continue;
      sym[i] = this.mergeResult[rank];
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      count--;
      if (prev[i] >= 0) consider(prev[i]);
      consider(i);
    }
    const out = new Int32Array(count);
    for (let i = 0, k = 0; i >= 0 && k < count; i = next[i]) out[k++] = sym[i];
    return out;
  }

  /** Bytes of a sequence of ids (special tokens as their UTF-8 content). */
  decodeBytes(ids: ArrayLike<number>, options: { skipSpecial?: boolean } = {}): Uint8Array {
    let len = 0;
    for (let i = 0; i < ids.length; i++) {
      this.checkId(ids[i]);
      if (!(options.skipSpecial && this.isSpecial(ids[i]))) len += this.tokenBytes[ids[i]].length;
    }
    const out = new Uint8Array(len);
    let o = 0;
    for (let i = 0; i < ids.length; i++) {
      if (options.skipSpecial && this.isSpecial(ids[i])) continue;
      const b = this.tokenBytes[ids[i]];
      out.set(b, o);
      o += b.length;
    }
    return out;
  }

  /** Text of a sequence of ids; invalid UTF-8 (a cut multi-byte character) becomes U+FFFD. */
  decode(ids: ArrayLike<number>, options: { skipSpecial?: boolean } = {}): string {
    return utf8Decoder.decode(this.decodeBytes(ids, options));
  }

  isSpecial(id: number): boolean {
    return this.specials.get(this.tokens[id]) === id;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} outside the vocabulary 0…${this.vocabSize - 1}`);
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerFormatError(`tokenizer.json: invalid JSON (${(e as Error).message})`);
  }
}

/** Concatenated ids of the documents, each followed by <|endoftext|> (specials in the texts are not parsed). */
export function encodeDocuments(tok: Tokenizer, texts: readonly string[]): Int32Array {
  let chars = 0;
  for (const t of texts) chars += t.length;
  const sink = new IdSink(Math.ceil(chars / 3) + texts.length);
  for (const t of texts) {
    tok.encodeInto(t, sink, false);
    sink.push(tok.eotId);
  }
  return sink.result();
}

/**
 * encodeDocuments that yields to the event loop every `every` documents, so a peer encoding its corpus
 * (seconds on a slow CPU) keeps answering heartbeats and network traffic meanwhile.
 */
export async function encodeDocumentsAsync(tok: Tokenizer, texts: readonly string[], every = 25): Promise<Int32Array> {
  let chars = 0;
  for (const t of texts) chars += t.length;
  const sink = new IdSink(Math.ceil(chars / 3) + texts.length);
  for (let i = 0; i < texts.length; i++) {
    tok.encodeInto(texts[i], sink, false);
    sink.push(tok.eotId);
    if (i % every === every - 1) await new Promise((r) => setTimeout(r, 0));
  }
  return sink.result();
}

/** Mean UTF-8 bytes per token of the documents (separators excluded from both counts). */
export function bytesPerToken(
  tok: Tokenizer,
  texts: readonly string[],
): { bytes: number; tokens: number; bytesPerToken: number } {
  let bytes = 0;
  let tokens = 0;
  for (const t of texts) {
    bytes += utf8Length(t);
    tokens += tok.encode(t, { allowSpecial: false }).length;
  }
  return { bytes, tokens, bytesPerToken: bytes / tokens };
}

export type { IdSink };
