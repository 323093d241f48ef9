// Head vectors of the attention kernels (attention.wgsl, attention-naive.wgsl, attention-decode.wgsl), read
// four elements at a time. The includer declares the `qkv` storage buffer ([rows, 3C], q | k | v).

override DH: u32 = 64;          // head dimension D
override D4: u32 = (DH + 3u) / 4u;

const MAXD4: u32 = 32u;         // D ≤ 128
const NEG: f32 = -3.0e38;       // "−∞" that stays finite: exp(NEG − m) = 0 without inf − inf = NaN

// Element d4·4 .. d4·4+3 of a head vector starting at `base` of qkv; lanes past D read as 0 (D % 4 ≠ 0).
fn ld_qkv(base: u32, d4: u32) -> vec4f {
  let d = d4 * 4u;
  if (DH % 4u == 0u || d + 3u < DH) {
    return vec4f(qkv[base + d], qkv[base + d + 1u], qkv[base + d + 2u], qkv[base + d + 3u]);
  }
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (d + c < DH) { r[c] = qkv[base + d + c]; } }
  return r;
}

fn hsum(v: vec4f) -> f32 {
  return (v.x + v.y) + (v.z + v.w);
}
