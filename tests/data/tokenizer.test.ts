import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { trainFromCounts, trainTokenizer } from '../../src/data/bpe-train.ts';
import { encodeCorpus, loadSplit, loadTokenizer, tokenizerPath } from '../../src/data/brown-node.ts';
import { TokenizerFormatError, VocabSizeError } from '../../src/data/errors.ts';
import {
  BYTE_TO_UNICODE,
  bitsPerByte,
  EOT,
  pretokenize,
  Tokenizer,
  type TokenizerJson,
} from '../../src/data/tokenizer.ts';
import { Rng } from '../../src/ops/rng.ts';

const utf8 = new TextEncoder();

/** Seeded random well-formed strings: ASCII, Latin, CJK, emoji (surrogate pairs), combining marks, odd spaces. */
function randomText(rng: Rng, n: number): string {
  const pools = [
    [0x20, 0x7e],
    [0x00, 0x1f],
    [0xa0, 0x24f],
    [0x300, 0x36f],
    [0x4e00, 0x4fff],
    [0x1f300, 0x1f64f],
    [0x2000, 0x206f],
    [0xfeff, 0xfeff],
    [0x85, 0x85],
  ];
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = pools[rng.int(pools.length)];
    s += String.fromCodePoint(lo + rng.int(hi - lo + 1));
  }
  return s;
}

describe('byte-level BPE', () => {
  it('maps the 256 bytes to distinct printable characters, GPT-2 style', () => {
    expect(new Set(BYTE_TO_UNICODE).size).toBe(256);
    expect(BYTE_TO_UNICODE[0x20]).toBe('Ġ');
    expect(BYTE_TO_UNICODE[0x0a]).toBe('Ċ');
    expect(BYTE_TO_UNICODE[0x41]).toBe('A');
  });

  it('pre-tokenizes with the GPT-2 regex', () => {
    expect(pretokenize("Hello world's  test\n123 ok?!")).toEqual([
      'Hello',
      ' world',
      "'s",
      ' ',
      ' test',
      '\n',
      '123',
      ' ok',
      '?!',
    ]);
  });

  it('learns the expected first merges on a hand-countable corpus', () => {
    // Pre-tokens: "low"×1, " low"×4, " lower"×2, " newest"×6, " widest"×3. Pair counts: e s 9, s t 9, l o 7, o w 7, …
    // Ties go to the smaller left id: 'e s' before 's t'; after it, 'es t' (9); 'l o' before 'o w' (7), then 'lo w'
    // (7); at 6, 'Ġ n' (n = 110) beats 'Ġ low' (id 259) and everything with a larger left id.
    const text = 'low low low low low lower lower newest newest newest newest newest newest widest widest widest';
    const tok = trainTokenizer([text], 300);
    expect(tok.merges.slice(0, 6).map((m) => m.join(' '))).toEqual(['e s', 'es t', 'l o', 'lo w', 'Ġ n', 'Ġ low']);
    expect(tok.token(256)).toBe('es');
    expect(tok.token(259)).toBe('low');
    // Fewer merges are possible than asked for: training stops, <|endoftext|> still takes the last id.
    expect(tok.vocabSize).toBe(256 + tok.merges.length + 1);
    expect(tok.eotId).toBe(tok.vocabSize - 1);
    expect(Array.from(tok.encode(' lowest newest')).map((i) => tok.token(i))).toEqual(['Ġlow', 'est', 'Ġnewest']);
    // Word counts in, same result.
    const counts = new Map([
      ['low', 1],
      [' low', 4],
      [' lower', 2],
      [' newest', 6],
      [' widest', 3],
    ]);
    expect(trainFromCounts(counts, 300).merges).toEqual(tok.merges);
  });

  it('round-trips corpus text and arbitrary unicode', async () => {
    const tok = loadTokenizer(4096);
    for (const d of await loadSplit('val')) {
      const ids = tok.encode(d.text);
      expect(tok.decode(ids)).toBe(d.text);
      expect(tok.countBytes(ids)).toBe(utf8.encode(d.text).length);
    }
    const rng = new Rng(7);
    const samples = [
      '',
      ' ',
      '\n\n\t ',
      '\0\x01\x7f',
      'naïve café — “quotes” …',
      '日本語のテキスト',
      '🤗👩‍👩‍👧 e\u0301',
      EOT,
      `a${EOT}b ${EOT}`,
    ];
    for (let i = 0; i < 200; i++) samples.push(randomText(rng, 1 + rng.int(40)));
    for (const s of samples) {
      const ids = tok.encode(s);
      expect(tok.decode(ids)).toBe(s);
      expect(Array.from(tok.encode(tok.decode(ids)))).toEqual(Array.from(ids));
      expect(ids.every((id) => id >= 0 && id < tok.vocabSize)).toBe(true);
    }
    // A long single pre-token stays fast (heap merge, not quadratic).
    const long = 'a'.repeat(200_000);
    expect(tok.decode(tok.encode(long))).toBe(long);
    // Every byte is a token; decodeBytes returns raw bytes, even ones that are not valid UTF-8.
    const allBytes = Array.from({ length: 256 }, (_, b) => tok.id(BYTE_TO_UNICODE[b])!);
    expect(Array.from(tok.decodeBytes(allBytes))).toEqual(Array.from({ length: 256 }, (_, b) => b));
    // Lone surrogates cannot be UTF-8: they come back as U+FFFD, as TextEncoder does.
    expect(tok.decode(tok.encode('x\ud800y'))).toBe('x\ufffdy');
  });

  it('treats <|endoftext|> as one special id unless told not to', () => {
    const tok = loadTokenizer(1024);
    expect(tok.eotId).toBe(1023);
    expect(tok.token(tok.eotId)).toBe(EOT);
    const ids = Array.from(tok.encode(`one${EOT}two`));
    expect(ids.filter((i) => i === tok.eotId).length).toBe(1);
    expect(tok.decode(ids, { skipSpecial: true })).toBe('onetwo');
    expect(Array.from(tok.encode(`one${EOT}two`, { allowSpecial: false }))).not.toContain(tok.eotId);
    expect(tok.byteLength(tok.eotId)).toBe(0);
  });

  it('gives the same ids as Hugging Face tokenizers for the shipped file', () => {
    // Ids produced by the Rust `tokenizers` 0.22.2 (Tokenizer.from_file('data/tokenizer-1024.json').encode(s).ids)
    // and by @huggingface/tokenizers 0.2.0 (JS); both loaded the whole validation split to the same ids as ours.
    const tok = loadTokenizer(1024);
    const s = 'Héllo, wörld! 🤗 It\'s 1961—"quotes"\n\n  tab\there <|endoftext|>x';
    expect(Array.from(tok.encode(s))).toEqual([
      72, 195, 169, 303, 111, 44, 264, 195, 182, 114, 318, 33, 32, 240, 159, 164, 151, 577, 366, 666, 54, 49, 226, 128,
      148, 34, 396, 314, 279, 34, 10, 10, 32, 256, 398, 9, 257, 262, 32, 1023, 120,
    ]);
  });

  it('ships tokenizer.json files in the Hugging Face format that reload to identical encodings', async () => {
    const val = (await loadSplit('val')).map((d) => d.text).join('\n');
    for (const v of [1024, 2048, 4096]) {
      const text = readFileSync(tokenizerPath(v), 'utf8');
      expect(text.length).toBeLessThan(1 << 20);
      const j = JSON.parse(text) as TokenizerJson;
      expect(j.version).toBe('1.0');
      expect(j.model.type).toBe('BPE');
      expect(Object.keys(j.model.vocab).length).toBe(v);
      expect(j.model.merges.length).toBe(v - 257);
      expect(j.model.merges.every((m) => m.split(' ').length === 2)).toBe(true);
      expect(j.added_tokens).toEqual([
        { id: v - 1, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ]);
      expect(j.model.vocab[EOT]).toBe(v - 1);
      expect(j.pre_tokenizer).toMatchObject({ type: 'ByteLevel', add_prefix_space: false, use_regex: true });
      expect(j.decoder.type).toBe('ByteLevel');
      const tok = Tokenizer.fromJSON(j);
      const again = Tokenizer.fromJSON(tok.serialize());
      const fromObject = Tokenizer.fromJSON(tok.toJSON());
      const ids = tok.encode(val);
      expect(again.encode(val)).toEqual(ids);
      expect(fromObject.encode(val)).toEqual(ids);
      expect(again.serialize()).toBe(text);
      expect(again.fingerprint).toBe(tok.fingerprint);
    }
  });

  it('rebuilds the shipped 1024 tokenizer byte for byte from the train split', async () => {
    const train = (await loadSplit('train')).map((d) => d.text);
    const t0 = performance.now();
    const tok = trainTokenizer(train, 1024);
    expect(performance.now() - t0).toBeLessThan(20_000);
    expect(tok.serialize()).toBe(readFileSync(tokenizerPath(1024), 'utf8'));
  });

  it('encodes the corpus with <|endoftext|> after every document', async () => {
    const tok = loadTokenizer(2048);
    const t0 = performance.now();
    const train = await encodeCorpus(tok, 'train');
    const val = await encodeCorpus(tok, 'val');
    expect(performance.now() - t0).toBeLessThan(20_000);
    const stats = JSON.parse(
      readFileSync(tokenizerPath(2048).replace('tokenizer-2048.json', 'brown-stats.json'), 'utf8'),
    );
    const entry = stats.tokenizers.find((t: { vocabSize: number }) => t.vocabSize === 2048);
    expect(train.length).toBe(entry.trainStreamTokens);
    expect(val.length).toBe(entry.valStreamTokens);
    const docs = await loadSplit('val');
    expect(val.filter((id) => id === tok.eotId).length).toBe(docs.length);
    expect(val[val.length - 1]).toBe(tok.eotId);
    const firstEot = val.indexOf(tok.eotId);
    expect(tok.decode(val.subarray(0, firstEot))).toBe(docs[0].text);
    expect(await encodeCorpus(tok, 'val')).toBe(val); // cached
  });

  it('computes bits per byte', () => {
    expect(bitsPerByte(8 * Math.LN2, 8)).toBeCloseTo(1, 12);
    expect(bitsPerByte(0, 10)).toBe(0);
    expect(() => bitsPerByte(1, 0)).toThrow(RangeError);
  });

  it('rejects bad vocabulary sizes and malformed files with typed errors', () => {
    expect(() => trainTokenizer(['abc'], 100)).toThrow(VocabSizeError);
    expect(() => trainTokenizer(['abc'], 512.5)).toThrow(VocabSizeError);
    expect(() => trainTokenizer(['abc'], 70_000)).toThrow(VocabSizeError);
    expect(() => loadTokenizer(3000)).toThrow(VocabSizeError);
    expect(() => loadTokenizer(3000)).toThrow(/shipped: 1024, 2048, 4096/);

    const good = loadTokenizer(1024).toJSON();
    const clone = (): TokenizerJson => JSON.parse(JSON.stringify(good));
    const bad: Array<[string, (j: TokenizerJson) => unknown]> = [
      ['model.type', (j) => ((j.model as { type: string }).type = 'WordPiece')],
      ['pre_tokenizer', (j) => ((j.pre_tokenizer as { type: string }).type = 'Whitespace')],
      ['no special token', (j) => (j.added_tokens = [])],
      ['not in the vocabulary', (j) => j.model.merges.push('Ġ zzzz')],
      ['not contiguous', (j) => delete j.model.vocab['Ġt']],
      ['not byte-level', (j) => ((j.model.vocab as Record<string, number>)['\u4e00'] = 1024)],
    ];
    for (const [what, mutate] of bad) {
      const j = clone();
      mutate(j);
      expect(() => Tokenizer.fromJSON(j), what).toThrow(TokenizerFormatError);
    }
    expect(() => Tokenizer.fromJSON('{not json')).toThrow(TokenizerFormatError);
    expect(() => loadTokenizer(1024).decode([1024])).toThrow(RangeError);
  });
});
