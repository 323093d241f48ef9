import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/model/config.ts';
import { crc32 } from '../../src/net/crc32.ts';
import { encodeFrame, FrameDecoder, FrameError, frameLimitsFor, type FrameLimits } from '../../src/net/frame-codec.ts';
import type { Frame } from '../../src/train/transport.ts';

const limits: FrameLimits = {
  maxHeaderBytes: 1024,
  maxPayloadBytes: 4096,
  maxPayloadBytesByKind: { norm: 8 },
  maxIds: 64,
};

function sample(over: Partial<Frame> = {}): Frame {
  const payload = new Uint8Array(48).map((_, i) => (i * 37 + 5) & 0xff);
  return {
    model: 'tiny',
    fromStage: 1,
    fromReplica: 0,
    step: 7,
    micro: 3,
    kind: 'act',
    shape: [3, 4],
    codec: 'none',
    payload,
    ids: Int32Array.from([5, -2, 70000]),
    ...over,
  };
}

/** A raw frame with an arbitrary header object (or raw header bytes) and body. */
function raw(header: unknown, body = new Uint8Array(0)): Uint8Array {
  const json = header instanceof Uint8Array ? header : new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(4 + json.length + body.length);
  new DataView(out.buffer).setUint32(0, json.length, false);
  out.set(json, 4);
  out.set(body, 4 + json.length);
  return out;
}

function goodHeader(): Record<string, unknown> {
  const body = new Uint8Array(8).fill(1);
  return {
    model: 'tiny',
    fromStage: 0,
    fromReplica: 0,
    step: 1,
    micro: 0,
    kind: 'act',
    dtype: 'f32',
    shape: [1, 2],
    codec: 'none',
    payloadBytes: 8,
    idsCount: 0,
    checksum: crc32(body),
  };
}

function expectRefused(bytes: Uint8Array, reason: RegExp, lim = limits): void {
  const d = new FrameDecoder(lim);
  let err: unknown;
  try {
    d.push(bytes);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(FrameError);
  expect((err as FrameError).reason).toMatch(reason);
  // The stream's framing is lost: the decoder refuses anything further.
  expect(() => d.push(encodeFrame(sample()))).toThrow(FrameError);
}

function expectSame(got: Frame, want: Frame): void {
  const { payload, ids, ...head } = got;
  const { payload: wp, ids: wi, ...wantHead } = want;
  expect(head).toEqual(wantHead);
  expect(Array.from(payload)).toEqual(Array.from(wp));
  expect(ids ? Array.from(ids) : undefined).toEqual(wi && wi.length > 0 ? Array.from(wi) : undefined);
}

describe('frame codec', () => {
  it('CRC-32 matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const b = new TextEncoder().encode('hello world');
    expect(crc32(b.subarray(5), crc32(b.subarray(0, 5)))).toBe(crc32(b));
  });

  it('round-trips frames with and without token ids, several per chunk', () => {
    const frames = [
      sample(),
      sample({ ids: undefined, kind: 'grad', step: 8 }),
      sample({ kind: 'norm', shape: [1, 1], codec: 'f64', payload: new Uint8Array(8).fill(9), ids: undefined }),
    ];
    const joined = new Uint8Array(frames.reduce((a, f) => a + encodeFrame(f).length, 0));
    let at = 0;
    for (const f of frames) {
      joined.set(encodeFrame(f), at);
      at += encodeFrame(f).length;
    }
    const got = new FrameDecoder(limits).push(joined);
    expect(got).toHaveLength(3);
    got.forEach((g, i) => expectSame(g, frames[i]));
    expect(got[0].ids).toBeInstanceOf(Int32Array);
    expect(got[1].ids).toBeUndefined();
  });

  it('decodes a frame split at every byte boundary, and byte by byte', () => {
    const f = sample();
    const bytes = encodeFrame(f);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new FrameDecoder(limits);
      const got = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))];
      expect(got, `cut at ${cut}`).toHaveLength(1);
      expectSame(got[0], f);
      expect(d.idle).toBe(true);
    }
    const d = new FrameDecoder(limits);
    const got: Frame[] = [];
    for (let i = 0; i < bytes.length; i++) {
      got.push(...d.push(bytes.subarray(i, i + 1)));
      if (i < bytes.length - 1) expect(d.idle).toBe(false);
    }
    expect(got).toHaveLength(1);
    expectSame(got[0], f);
  });

  it('decoded payloads own their buffers (a Float32Array view over them is safe)', () => {
    const x = Float32Array.from([1.5, -2, 3.25, 4]);
    const f = sample({ shape: [1, 4], payload: new Uint8Array(x.buffer), ids: undefined });
    const [got] = new FrameDecoder(limits).push(encodeFrame(f));
    expect(got.payload.byteOffset).toBe(0);
    expect(Array.from(new Float32Array(got.payload.buffer))).toEqual(Array.from(x));
  });

  it('refuses a header length over the limit as soon as the 4 length bytes arrive', () => {
    const prefix = new Uint8Array(4);
    new DataView(prefix.buffer).setUint32(0, 1025, false);
    expectRefused(prefix, /header of 1025 bytes exceeds the limit of 1024/);
    expectRefused(new Uint8Array(4), /empty header/);
  });

  it('refuses a 4 GB payload from the header alone, before any body byte', () => {
    const h = { ...goodHeader(), payloadBytes: 4 * 2 ** 30 };
    expectRefused(raw(h), /act payload of 4294967296 bytes exceeds the limit of 4096/);
    expectRefused(
      raw({ ...goodHeader(), kind: 'norm', payloadBytes: 16 }),
      /norm payload of 16 bytes exceeds the limit of 8/,
    );
    expectRefused(raw({ ...goodHeader(), idsCount: 65 }), /65 token ids exceed the limit of 64/);
  });

  it('refuses headers that are not JSON objects', () => {
    expectRefused(raw(new TextEncoder().encode('{"model": "tiny",')), /not UTF-8 JSON/);
    expectRefused(raw(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), /not UTF-8 JSON/);
    expectRefused(raw([1, 2]), /not a JSON object/);
    expectRefused(raw(null), /not a JSON object/);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['missing model', { model: undefined }, /model must be a non-empty string/],
    ['empty model', { model: '' }, /model must be a non-empty string/],
    ['mistyped step', { step: '1' }, /step must be a non-negative integer, got "1"/],
    ['missing micro', { micro: undefined }, /micro must be a non-negative integer/],
    ['fractional micro', { micro: 1.5 }, /micro must be a non-negative integer, got 1.5/],
    ['negative stage', { fromStage: -1 }, /fromStage must be a non-negative integer, got -1/],
    ['unsafe integer step', { step: 2 ** 60 }, /step must be a non-negative integer/],
    ['negative payload', { payloadBytes: -8 }, /payloadBytes must be a non-negative integer/],
    [
      'unknown kind',
      { kind: 'weights' },
      /kind must be one of act, grad, gradsync, norm, audit, auditlist, got "weights"/,
    ],
    ['wrong dtype', { dtype: 'f16' }, /dtype must be 'f32'/],
    ['zero row', { shape: [0, 2] }, /shape must be two positive integers/],
    ['three dims', { shape: [1, 2, 3] }, /shape must be two positive integers/],
    ['string dims', { shape: ['1', 2] }, /shape must be two positive integers/],
    ['bad codec', { codec: 'none; rm -rf' }, /codec must be a codec name/],
    ['checksum over 32 bits', { checksum: 2 ** 32 }, /checksum must be an unsigned 32-bit integer/],
  ];
  for (const [name, change, reason] of bad) {
    it(`refuses a header with ${name}`, () => {
      const h = { ...goodHeader(), ...change };
      for (const k of Object.keys(change)) if (change[k] === undefined) delete h[k];
      expectRefused(raw(h, new Uint8Array(8).fill(1)), reason);
    });
  }

  it('accepts the reference header (so each case above fails for its own field)', () => {
    const [f] = new FrameDecoder(limits).push(raw(goodHeader(), new Uint8Array(8).fill(1)));
    expect(f.shape).toEqual([1, 2]);
  });

  it('refuses a corrupted payload or ids by checksum', () => {
    const bytes = encodeFrame(sample());
    const payloadByte = bytes.length - 12 - 5;
    const flipped = bytes.slice();
    flipped[payloadByte] ^= 1;
    expectRefused(flipped, /checksum mismatch/);
    const idFlipped = bytes.slice();
    idFlipped[bytes.length - 1] ^= 0x80;
    expectRefused(idFlipped, /checksum mismatch/);
  });

  it('encodeFrame refuses a frame no receiver would accept', () => {
    expect(() => encodeFrame(sample({ shape: [0, 4] }))).toThrow(FrameError);
    expect(() => encodeFrame(sample({ step: -1 }))).toThrow(/step must be a non-negative integer/);
    expect(() => encodeFrame(sample({ kind: 'bogus' as Frame['kind'] }))).toThrow(/kind must be one of/);
  });

  it('derives limits from the model config', () => {
    const cfg: ModelConfig = { vocab: 100, dModel: 16, heads: 2, layers: 4, context: 32 };
    const C = 16;
    const block = 12 * C * C + 13 * C;
    const total = 100 * C + 32 * C + 4 * block + 2 * C + C * 100;
    const whole = frameLimitsFor(cfg, 3);
    expect(whole.maxPayloadBytesByKind).toEqual({
      audit: 3 * 32 * C * 4,
      auditlist: 4 * 1024,
      act: 3 * 32 * C * 4,
      grad: 3 * 32 * C * 4,
      gradsync: 4 * total,
      norm: 8,
    });
    expect(whole.maxIds).toBe(3 * 32);
    expect(whole.maxPayloadBytes).toBe(4 * total);
    // Two stages of 2 layers: stage 0 holds the embeddings, stage 1 the final LayerNorm and head.
    const split = frameLimitsFor(cfg, 3, 2);
    expect(split.maxPayloadBytesByKind?.gradsync).toBe(
      4 * Math.max(100 * C + 32 * C + 2 * block, 2 * block + 2 * C + C * 100),
    );
    expect(() => frameLimitsFor(cfg, 0)).toThrow(FrameError);
  });
});
