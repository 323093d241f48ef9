/**
 * Packs scalar kernel parameters into a uniform buffer. Each entry is 4 bytes, in order, matching a WGSL
 * struct of u32/i32/f32 fields (which uniform layout packs contiguously); the total is padded to 16 bytes.
 */
export type Param = ['u32' | 'i32' | 'f32', number];

export function packParams(params: readonly Param[]): ArrayBuffer {
  const bytes = Math.max(16, Math.ceil((params.length * 4) / 16) * 16);
  const view = new DataView(new ArrayBuffer(bytes));
  params.forEach(([type, value], i) => {
    if (type === 'f32') view.setFloat32(i * 4, value, true);
    else if (type === 'i32') view.setInt32(i * 4, value, true);
    else {
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
        throw new RangeError(`u32 param ${i} out of range: ${value}`);
      view.setUint32(i * 4, value, true);
    }
  });
  return view.buffer;
}
