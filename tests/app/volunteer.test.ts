import { describe, expect, it } from 'vitest';
import { routeOf } from '../../src/app/route.ts';
import { decodeTokenStream } from '../../src/app/volunteer/corpus.ts';

describe('volunteer tab helpers', () => {
  it('decodes the corpus stream as little-endian Uint16 ids', () => {
    const bytes = Uint8Array.of(0x01, 0x00, 0xff, 0x03, 0x00, 0x02).buffer;
    expect([...decodeTokenStream(bytes, 1024, 'x')]).toEqual([1, 1023, 512]);
  });

  it('refuses a stream cut mid-token or holding an id outside the vocabulary, naming where', () => {
    expect(() => decodeTokenStream(new Uint8Array(3).buffer, 1024, 'train')).toThrow(
      /train: 3 bytes is not a whole number of Uint16 tokens/,
    );
    expect(() => decodeTokenStream(Uint8Array.of(5, 0, 0x00, 0x04).buffer, 1024, 'val')).toThrow(
      /val: token 1024 at position 1 is outside the 1024-token vocabulary/,
    );
  });

  it('maps the URL hash to a page, the GPU page by default', () => {
    expect(routeOf('')).toBe('gpu');
    expect(routeOf('#/')).toBe('gpu');
    expect(routeOf('#/volunteer')).toBe('volunteer');
    expect(routeOf('#volunteer')).toBe('volunteer');
    expect(routeOf('#/volunteer?x=1')).toBe('volunteer');
    expect(routeOf('#/nowhere')).toBe('gpu');
  });
});
