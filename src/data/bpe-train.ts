/**
 * Byte-level BPE training (browser-safe). Works on word frequencies: the texts are pre-tokenised with the
 * GPT-2 regex, identical pre-tokens are counted once, and merges are learnt over the unique pre-tokens
 * weighted by their counts, with incrementally updated pair counts:
 *
 *   pairCount(x, y) = Σ over words w, over adjacent (x, y) in w: count(w)
 *   repeat until the vocabulary (256 bytes + merge results) has vocabSize − 1 tokens:
 *     pick the pair with the highest count; ties go to the smaller left id, then the smaller right id
 *     (ids: bytes 0–255 by value, then merge results in creation order); stop if its count < minFrequency
 *     append the merge; the joined string becomes a new id (or reuses the id of an equal existing string)
 *     in every word that holds the pair (an index pair → words finds them), replace the pair left to right,
 *     non-overlapping, and apply the resulting ± changes of its pair counts
 *   the last id is <|endoftext|>.
 * A lazy max-heap (stale entries skipped on pop) finds the best pair; each merge costs time proportional to
 * the words it touches, not to the whole vocabulary.
 */
import { VocabSizeError } from './errors.ts';
import { BYTE_TO_UNICODE, EOT, MAX_VOCAB, MIN_VOCAB, PRETOKENIZE_PATTERN, Tokenizer } from './tokenizer.ts';

export interface TrainOptions {
  /** Pairs seen fewer times than this are never merged (training may then stop below vocabSize). Default 2. */
  minFrequency?: number;
  /** Called every 256 merges with (merges done, merges wanted). */
  onProgress?: (done: number, total: number) => void;
}

/** Unique pre-tokens of the texts with their counts (special tokens are not parsed: train on plain text). */
export function countPretokens(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(PRETOKENIZE_PATTERN)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

export function checkVocabSize(vocabSize: number): void {
  if (!Number.isInteger(vocabSize) || vocabSize < MIN_VOCAB || vocabSize > MAX_VOCAB) {
    throw new VocabSizeError(
      `vocabulary size must be an integer in ${MIN_VOCAB}…${MAX_VOCAB} (256 bytes + merges + ${EOT}), got ${vocabSize}`,
    );
  }
}

/** Trains a byte-level BPE with at most `vocabSize` ids (the last is <|endoftext|>). */
export function trainTokenizer(texts: Iterable<string>, vocabSize: number, options: TrainOptions = {}): Tokenizer {
  checkVocabSize(vocabSize);
  return trainFromCounts(countPretokens(texts), vocabSize, options);
}

// Pair keys a·K + b; ids stay below MAX_VOCAB = K.
const K = MAX_VOCAB;

export function trainFromCounts(
  wordCounts: ReadonlyMap<string, number>,
  vocabSize: number,
  options: TrainOptions = {},
): Tokenizer {
  checkVocabSize(vocabSize);
  const minFrequency = options.minFrequency ?? 2;
  const tokens: string[] = BYTE_TO_UNICODE.slice();
  const tokenIds = new Map<string, number>(tokens.map((t, i) => [t, i]));
  const merges: Array<[string, string]> = [];
  const mergedPairs = new Set<number>();

  const enc = new TextEncoder();
  const nWords = wordCounts.size;
  const words: Int32Array[] = new Array(nWords);
  const lens = new Int32Array(nWords);
  const freq = new Float64Array(nWords);
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const addWord = (key: number, w: number): void => {
    const list = pairWords.get(key);
    if (list) {
      if (list[list.length - 1] !== w) list.push(w);
    } else pairWords.set(key, [w]);
  };

  let w = 0;
  for (const [word, count] of wordCounts) {
    const bytes = enc.encode(word);
    const syms = Int32Array.from(bytes);
    words[w] = syms;
    lens[w] = syms.length;
    freq[w] = count;
    for (let i = 0; i + 1 < syms.length; i++) {
      const key = syms[i] * K + syms[i + 1];
      pairCount.set(key, (pairCount.get(key) ?? 0) + count);
      addWord(key, w);
    }
    w++;
  }

  // Max-heap of (count, key): larger count first, then smaller key. Parallel arrays; stale entries stay.
  const hc: number[] = [];
  const hk: number[] = [];
  const above = (c1: number, k1: number, c2: number, k2: number): boolean => c1 > c2 || (c1 === c2 && k1 < k2);
  const push = (c: number, k: number): void => {
    let i = hc.length;
    hc.push(c);
    hk.push(k);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!above(c, k, hc[p], hk[p])) break;
      hc[i] = hc[p];
      hk[i] = hk[p];
      i = p;
    }
    hc[i] = c;
    hk[i] = k;
  };
  const popInto = (out: { c: number; k: number }): void => {
    out.c = hc[0];
    out.k = hk[0];
    const c = hc.pop()!;
    const k = hk.pop()!;
    const len = hc.length;
    if (len === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= len) break;
      const r = l + 1;
      const m = r < len && above(hc[r], hk[r], hc[l], hk[l]) ? r : l;
      if (!above(hc[m], hk[m], c, k)) break;
      hc[i] = hc[m];
      hk[i] = hk[m];
      i = m;
    }
    hc[i] = c;
    hk[i] = k;
  };
  for (const [k, c] of pairCount) push(c, k);

  const target = vocabSize - 1; // last id: <|endoftext|>
  const wantMerges = target - tokens.length;
  const seen = new Int32Array(nWords);
  let stamp = 0;
  const delta = new Map<number, number>();
  const top = { c: 0, k: 0 };

  while (tokens.length < target) {
    let best = -1;
    while (hc.length > 0) {
      popInto(top);
      if (pairCount.get(top.k) === top.c) {
        best = top.k;
        break;
      }
    }
    if (best < 0 || top.c < minFrequency) break;
    const a = Math.floor(best / K);
    const b = best - a * K;
    const joined = tokens[a] + tokens[b];
    let id = tokenIds.get(joined);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(joined);
      tokenIds.set(joined, id);
    }
    if (!mergedPairs.has(best)) {
      mergedPairs.add(best);
      merges.push([tokens[a], tokens[b]]);
    }

    const list = pairWords.get(best) ?? [];
    pairWords.delete(best);
    stamp++;
    delta.clear();
    for (const wi of list) {
      if (seen[wi] === stamp) continue;
      seen[wi] = stamp;
      const s = words[wi];
      const n = lens[wi];
      let has = false;
      for (let i = 0; i + 1 < n; i++) {
        if (s[i] === a && s[i + 1] === b) {
          has = true;
          break;
        }
      }
      if (!has) continue;
      const f = freq[wi];
      for (let i = 0; i + 1 < n; i++) {
        const key = s[i] * K + s[i + 1];
        delta.set(key, (delta.get(key) ?? 0) - f);
      }
      let j = 0;
      for (let i = 0; i < n; ) {
        if (i + 1 < n && s[i] === a && s[i + 1] === b) {
          s[j++] = id;
          i += 2;
        } else s[j++] = s[i++];
      }
      lens[wi] = j;
      for (let i = 0; i + 1 < j; i++) {
        const key = s[i] * K + s[i + 1];
        delta.set(key, (delta.get(key) ?? 0) + f);
        if (s[i] === id || s[i + 1] === id) addWord(key, wi);
      }
    }
    for (const [key, d] of delta) {
      if (d === 0) continue;
      const c = (pairCount.get(key) ?? 0) + d;
      if (c > 0) {
        pairCount.set(key, c);
        push(c, key);
      } else {
        pairCount.delete(key);
      }
    }
    if (options.onProgress && merges.length % 256 === 0) options.onProgress(merges.length, wantMerges);
  }

  tokens.push(EOT);
  return new Tokenizer({ tokens, merges, specialIds: [tokens.length - 1] });
}
