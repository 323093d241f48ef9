import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { brownDir, DATA_DIR, loadBrownNode } from '../../src/data/brown-node.ts';
import {
  brownDocumentText,
  detokenize,
  loadBrown,
  splitBrown,
  splitStats,
  stripTags,
  VAL_EVERY,
} from '../../src/data/corpus.ts';
import { CorpusError } from '../../src/data/errors.ts';

const raw = (name: string): string => readFileSync(join(brownDir(), name), 'utf8');

describe('Brown corpus text', () => {
  it('strips tags at the last slash, keeping slashes inside words', () => {
    const firstLine = raw('ca01')
      .split('\n')
      .find((l) => l.trim() !== '')!;
    const words = stripTags(firstLine);
    expect(words.slice(0, 6)).toEqual(['The', 'Fulton', 'County', 'Grand', 'Jury', 'said']);
    expect(words).toContain("Atlanta's");
    expect(words).toContain('``');
    expect(words.every((w) => !/\/[a-z]/.test(w))).toBe(true);
    expect(stripTags("1/2/cd and/or/cc //in 1/4''/nn Input/Output/jj-tl")).toEqual([
      '1/2',
      'and/or',
      '/',
      "1/4''",
      'Input/Output',
    ]);
  });

  it('detokenizes a real sentence: quotes, punctuation, no space before commas', () => {
    const firstLine = raw('ca01')
      .split('\n')
      .find((l) => l.trim() !== '')!;
    expect(detokenize(stripTags(firstLine))).toBe(
      "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election " +
        'produced "no evidence" that any irregularities took place.',
    );
    expect(
      detokenize([
        '(',
        'see',
        'Fig.',
        '26',
        ')',
        ',',
        'he',
        'said',
        '--',
        'twice',
        ';',
        'more',
        "'",
        'pro',
        "'",
        'letters',
        '?',
      ]),
    ).toBe("(see Fig. 26), he said--twice; more 'pro' letters?");
  });

  it('fixes the corpus quirks: doubled ; ? !, "Jr. .", punctuation after closing quotes, headlines', () => {
    const doc = [
      '',
      '',
      '\tWon/vbn by/in Ivan/np Allen/np Jr./np ./.',
      'Is/bez it/pps ?/. ?/. Yes/rb ;/. ;/.',
      'no/rb ./.',
      '',
      '',
      "\t``/`` I/ppss saw/vbd your/pp$ fire/nn ''/'' ,/, she/pps said/vbd ./.",
      'Merger/nn-hl proposed/vbn-hl',
      "However/rb ,/, ``/`` no/rb ''/'' ./.",
    ].join('\n');
    const { text, words } = brownDocumentText(doc);
    expect(text).toBe(
      [
        'Won by Ivan Allen Jr. Is it? Yes; no.',
        '"I saw your fire," she said.',
        'Merger proposed',
        'However, "no."',
      ].join('\n'),
    );
    expect(words).toBe(33);
  });

  it('loads all 500 documents with their genres and no tags left', async () => {
    const docs = await loadBrownNode();
    expect(docs.length).toBe(500);
    expect(docs[0].id).toBe('ca01');
    expect(docs[0].category).toBe('news');
    expect(docs[499].id).toBe('cr09');
    expect(new Set(docs.map((d) => d.category)).size).toBe(15);
    const all = docs.map((d) => d.text).join('\n');
    expect(all).not.toMatch(/\w\/(?:at|nn|nns|in|vbd|jj|np|cc|rb)(?=\s)/);
    // ("''" survives only as an inch mark: 12'' long)
    expect(all).not.toMatch(/``| [,.;:?!] |[a-z]''/);
    expect(docs.every((d) => d.text.length > 5000 && !d.text.startsWith(' ') && !d.text.endsWith('\n'))).toBe(true);
  });

  it('splits by document: disjoint, complete, every 20th document held out, stable', async () => {
    const docs = await loadBrownNode();
    const { train, val } = splitBrown(docs);
    expect(val.length).toBe(500 / VAL_EVERY);
    expect(train.length + val.length).toBe(500);
    const trainIds = new Set(train.map((d) => d.id));
    expect(val.some((d) => trainIds.has(d.id))).toBe(false);
    expect(val.slice(0, 4).map((d) => d.id)).toEqual(['ca01', 'ca21', 'ca41', 'cb17']);
    // A fresh parse (as another peer would do it) gives the same split and texts.
    const again = splitBrown(await loadBrown((name) => raw(name)));
    expect(again.val.map((d) => d.id)).toEqual(val.map((d) => d.id));
    expect(again.val.map((d) => d.text)).toEqual(val.map((d) => d.text));
    // The committed statistics describe this split.
    const stats = JSON.parse(readFileSync(join(DATA_DIR, 'brown-stats.json'), 'utf8'));
    expect(stats.split.train).toEqual(splitStats(train));
    const { ids, ...valStats } = stats.split.val;
    expect(valStats).toEqual(splitStats(val));
    expect(ids).toEqual(val.map((d) => d.id));
    expect(splitStats(train).bytes).toBeGreaterThan(5e6);
  });

  it('reports a missing or empty corpus file as a CorpusError', async () => {
    await expect(loadBrown(() => '')).rejects.toBeInstanceOf(CorpusError);
    await expect(loadBrown((n) => (n === 'cats.txt' ? 'ca01 news\n' : '\n\n'))).rejects.toThrow(/ca01 is empty/);
  });
});
