import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseSafetensors, SafetensorsError, serializeSafetensors } from '../../src/model/safetensors.ts';

describe('safetensors', () => {
  it('reads the golden tiny GPT written by an independent implementation', async () => {
    const { tensors } = await parseSafetensors(
      new Uint8Array(readFileSync(new URL('../fixtures/golden/tiny-gpt.safetensors', import.meta.url))),
    );
    expect(tensors.get('wte')?.shape).toEqual([37, 16]);
    expect(tensors.get('h.1.attn.qkv.w')?.shape).toEqual([16, 48]);
    expect(tensors.get('head.w')?.data).toBeInstanceOf(Float32Array);
    const grads = await parseSafetensors(
      new Uint8Array(readFileSync(new URL('../fixtures/golden/tiny-gpt.grads.safetensors', import.meta.url))),
    );
    expect(grads.tensors.get('wte')?.data).toBeInstanceOf(Float64Array);
  });

  it('round-trips tensors and metadata, with a content hash', async () => {
    const a = { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
    const b = { shape: [4], data: Int32Array.from([-1, 0, 7, 9]) };
    const bytes = await serializeSafetensors({ a, b }, { stage: '1' });
    const parsed = await parseSafetensors(bytes);
    expect([...parsed.tensors.get('a')!.data]).toEqual([...a.data]);
    expect([...parsed.tensors.get('b')!.data]).toEqual([...b.data]);
    expect(parsed.metadata.stage).toBe('1');
    expect(parsed.metadata.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('rejects a flipped data byte, truncation and a malformed header with a reason', async () => {
    const bytes = await serializeSafetensors({ a: { shape: [3], data: Float32Array.from([1, 2, 3]) } });
    const flipped = bytes.slice();
    flipped[flipped.length - 1] ^= 1;
    await expect(parseSafetensors(flipped)).rejects.toThrow(/content hash mismatch/);
    await expect(parseSafetensors(bytes.subarray(0, bytes.length - 4))).rejects.toThrow(SafetensorsError);
    const garbage = bytes.slice();
    garbage[9] = 0x7b; // '{' inside the JSON → invalid
    garbage[10] = 0x7b;
    await expect(parseSafetensors(garbage)).rejects.toThrow(SafetensorsError);
    await expect(parseSafetensors(new Uint8Array(4))).rejects.toThrow(/too short/);
  });
});
