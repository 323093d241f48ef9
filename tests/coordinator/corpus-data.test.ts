import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { CorpusData, uint16le } from '../../src/coordinator/corpus-data.ts';
import { encodeCorpus, loadTokenizer, tokenizerPath } from '../../src/data/brown-node.ts';
import { Tokenizer } from '../../src/data/tokenizer.ts';
import { memoryLog, tempDir } from './fixtures.ts';

/** The corpus routes a browser peer loads its training data from, against a real coordinator. */
describe('coordinator corpus routes', () => {
  const tmp = tempDir();
  const logs = memoryLog();
  let coord: Coordinator;

  beforeAll(async () => {
    coord = await Coordinator.start({ dbPath: join(tmp.dir, 'c.db'), log: logs.log });
  });
  afterAll(async () => {
    await coord.stop();
    tmp.cleanup();
  });

  const get = (path: string) => fetch(coord.url + path);
  const ids = async (res: Response) => {
    const bytes = new Uint8Array(await res.arrayBuffer());
    const view = new DataView(bytes.buffer);
    return Int32Array.from({ length: bytes.length / 2 }, (_, i) => view.getUint16(2 * i, true));
  };

  it('serves the committed tokenizer file as it is', async () => {
    const res = await get('/api/data/brown/1024/tokenizer.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const text = await res.text();
    expect(text).toBe(readFileSync(tokenizerPath(1024), 'utf8'));
    expect(Tokenizer.fromJSON(text).vocabSize).toBe(1024);
  });

  it('serves each split as little-endian Uint16 equal to encodeCorpus, with its length', async () => {
    const tok = loadTokenizer(1024);
    for (const split of ['val', 'train'] as const) {
      const res = await get(`/api/data/brown/1024/${split}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
      const expected = await encodeCorpus(tok, split);
      expect(Number(res.headers.get('content-length'))).toBe(2 * expected.length);
      const got = await ids(res);
      expect(got.length).toBe(expected.length);
      // Compare whole arrays cheaply but exactly: a mismatch anywhere fails.
      expect(Buffer.from(got.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    }
    // The 2048-token vocabulary encodes differently (more merges → fewer tokens).
    const wider = await get('/api/data/brown/2048/val');
    expect(Number(wider.headers.get('content-length'))).toBeLessThan(2 * (await encodeCorpus(tok, 'val')).length);
    await wider.arrayBuffer();
  });

  it('encodes once per vocabulary and split, sharing the encode between concurrent requests', async () => {
    const data = new CorpusData();
    const [a, b] = await Promise.all([data.tokens('1024', 'val'), data.tokens('1024', 'val')]);
    expect(a).toBe(b);
    expect(await data.tokens('1024', 'val')).toBe(a);
  });

  it('refuses unknown vocabularies and splits with a reason, and keeps serving', async () => {
    const cases: Array<[string, number, RegExp]> = [
      ['/api/data/brown/999/train', 404, /no Brown tokenizer for vocabulary "999" \(shipped: 1024, 2048, 4096\)/],
      ['/api/data/brown/abc/tokenizer.json', 404, /no Brown tokenizer for vocabulary "abc"/],
      ['/api/data/brown/1024/test', 404, /no split "test" \(splits: train, val\)/],
      ['/api/data/brown/1024', 404, /no route/],
      ['/api/data/brown/1024/train/extra', 404, /no route/],
      ['/api/data/brown/%ZZ/train', 400, /malformed path segment/],
    ];
    for (const [path, status, reason] of cases) {
      const res = await get(path);
      expect(res.status, path).toBe(status);
      expect(((await res.json()) as { error: string }).error, path).toMatch(reason);
    }
    const post = await fetch(coord.url + '/api/data/brown/1024/train', { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    expect(logs.lines.filter((l) => l.level === 'warn').length).toBeGreaterThanOrEqual(cases.length);
    expect((await get('/api/health')).status).toBe(200);
  });

  it('refuses a token id that does not fit in Uint16', () => {
    expect(uint16le(Int32Array.of(0, 65535)).equals(Buffer.from([0, 0, 0xff, 0xff]))).toBe(true);
    expect(() => uint16le(Int32Array.of(1, 65536))).toThrow(/token id 65536 at 1/);
  });
});
