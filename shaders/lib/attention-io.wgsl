// Uniforms, bindings and per-buffer loaders of the training attention kernels: the FlashAttention-2 one
// (attention.wgsl) and the plain one it is checked beside (attention-naive.wgsl). Same layout for both, so
// their wrappers bind the same tensors to the same slots.
//
// qkv [B·T, 3C]: columns [0,C) q, [C,2C) k, [2C,3C) v; head h uses columns h·D..(h+1)·D of each.
// out [B·T, C]; lse and delta [B·H·T], index (b·H + h)·T + t.

#include "lib/attention-head.wgsl"

struct Params {
  T: u32,      // sequence length
  H: u32,      // heads
  C: u32,      // channels (H·D)
  nblk: u32,   // (FlashAttention) row blocks per (b, h): ceil(T / BR)
  nbh: u32,    // B·H
  scale: f32,  // 1/sqrt(D)
  rpi: u32,    // (FlashAttention) = RPI, as a runtime value: loops over it stay rolled
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
// forward
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
// delta: reads o (forward output) and dout, writes delta
@group(0) @binding(4) var<storage, read> o_in: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
// dQ, dK/dV
@group(0) @binding(3) var<storage, read> lse_in: array<f32>;
@group(0) @binding(6) var<storage, read> delta_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dqkv: array<f32>;

fn ld_dout(base: u32, d4: u32) -> vec4f {
  let d = d4 * 4u;
  if (DH % 4u == 0u || d + 3u < DH) {
    return vec4f(dout[base + d], dout[base + d + 1u], dout[base + d + 2u], dout[base + d + 3u]);
  }
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (d + c < DH) { r[c] = dout[base + d + c]; } }
  return r;
}

fn ld_o(base: u32, d4: u32) -> vec4f {
  let d = d4 * 4u;
  if (DH % 4u == 0u || d + 3u < DH) {
    return vec4f(o_in[base + d], o_in[base + d + 1u], o_in[base + d + 2u], o_in[base + d + 3u]);
  }
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (d + c < DH) { r[c] = o_in[base + d + c]; } }
  return r;
}

fn st_out(base: u32, d4: u32, v: vec4f) {
  for (var c = 0u; c < 4u; c++) { if (d4 * 4u + c < DH) { out[base + d4 * 4u + c] = v[c]; } }
}

fn st_dqkv(base: u32, d4: u32, v: vec4f) {
  for (var c = 0u; c < 4u; c++) { if (d4 * 4u + c < DH) { dqkv[base + d4 * 4u + c] = v[c]; } }
}
