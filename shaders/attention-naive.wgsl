// Causal multi-head attention, version 1: the plain kernel. Read this before attention.wgsl, which computes
// the same function FlashAttention-2 style (tiles, register blocking, online softmax) and is checked
// against the same float64 reference (src/ops/attention.ref.ts).
//
// One invocation per (b, h, row), index i = (b·H + h)·T + t; nothing is shared between invocations, no
// workgroup memory, no barriers. Softmax the textbook way: a first pass over the row's keys finds the max
// score m, a second sums exp(s − m) and the weighted values. Every sum runs in key (or query) order:
// deterministic. Layout and bindings: lib/attention-io.wgsl (the same slots as the FlashAttention kernel).
//
//   forward:      O_t = Σ_{j ≤ t} P_tj v_j with P_tj = exp(s_tj − lse_t), s_tj = scale·q_t·k_j; writes lse_t.
//   backward_dq:  dQ_t = scale · Σ_{j ≤ t} P_tj (dP_tj − delta_t) k_j, dP_tj = dO_t·v_j, delta_t = dO_t·O_t.
//   backward_dkv: for key row j (the invocation's t), over queries i ≥ j:
//                 dV_j = Σ_i P_ij dO_i,  dK_j = scale · Σ_i P_ij (dP_ij − delta_i) q_i.
// delta_i is recomputed where needed (D multiply-adds per pair): no extra pass, no extra buffer.

#include "lib/attention-io.wgsl"

override WG: u32 = 64;

var<private> x: array<vec4f, MAXD4>;    // q·scale (forward, dQ) or k·scale (dK/dV) of the own row
var<private> y: array<vec4f, MAXD4>;    // dO (dQ) or v (dK/dV) of the own row
var<private> acc: array<vec4f, MAXD4>;  // O, dQ or dK
var<private> acc2: array<vec4f, MAXD4>; // dV

struct Row {
  valid: bool,
  i: u32,      // (b·H + h)·T + t: index into lse
  t: u32,      // position in the sequence
  seq0: u32,   // row of token 0 of this sequence in qkv / out
  hoff: u32,   // h·D
}

fn own_row(wid: vec3u, lid: vec3u, nwg: vec3u) -> Row {
  var r: Row;
  r.i = (wid.x + wid.y * nwg.x) * WG + lid.x;
  r.valid = r.i < p.nbh * p.T;
  let bh = r.i / p.T;
  r.t = r.i % p.T;
  r.seq0 = (bh / p.H) * p.T;
  r.hoff = (bh % p.H) * DH;
  return r;
}

// Start of head vector `part` (0 q, 1 k, 2 v) of token t in qkv, and of token t in out / dout.
fn qkv_at(r: Row, t: u32, part: u32) -> u32 {
  return (r.seq0 + t) * 3u * p.C + part * p.C + r.hoff;
}

fn out_at(r: Row, t: u32) -> u32 {
  return (r.seq0 + t) * p.C + r.hoff;
}

// x · (the head vector at base of qkv).
fn dot_x(base: u32) -> f32 {
  var s = vec4f(0.0);
  for (var d4 = 0u; d4 < D4; d4++) { s += x[d4] * ld_qkv(base, d4); }
  return hsum(s);
}

// dO_t · O_t.
fn delta_of(r: Row, t: u32) -> f32 {
  var s = vec4f(0.0);
  for (var d4 = 0u; d4 < D4; d4++) { s += ld_dout(out_at(r, t), d4) * ld_o(out_at(r, t), d4); }
  return hsum(s);
}

@compute @workgroup_size(WG)
fn forward(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let r = own_row(wid, lid, nwg);
  if (!r.valid) { return; }
  for (var d4 = 0u; d4 < D4; d4++) {
    x[d4] = ld_qkv(qkv_at(r, r.t, 0u), d4) * p.scale;
    acc[d4] = vec4f(0.0);
  }
  var m = NEG;
  for (var j = 0u; j <= r.t; j++) { m = max(m, dot_x(qkv_at(r, j, 1u))); }
  var l = 0.0;
  for (var j = 0u; j <= r.t; j++) {
    let e = exp(dot_x(qkv_at(r, j, 1u)) - m);
    l += e;
    for (var d4 = 0u; d4 < D4; d4++) { acc[d4] += e * ld_qkv(qkv_at(r, j, 2u), d4); }
  }
  for (var d4 = 0u; d4 < D4; d4++) { st_out(out_at(r, r.t), d4, acc[d4] / l); }
  lse[r.i] = m + log(l);
}

@compute @workgroup_size(WG)
fn backward_dq(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let r = own_row(wid, lid, nwg);
  if (!r.valid) { return; }
  for (var d4 = 0u; d4 < D4; d4++) {
    x[d4] = ld_qkv(qkv_at(r, r.t, 0u), d4) * p.scale;
    y[d4] = ld_dout(out_at(r, r.t), d4);
    acc[d4] = vec4f(0.0);
  }
  let l = lse_in[r.i];
  let dl = delta_of(r, r.t);
  for (var j = 0u; j <= r.t; j++) {
    let pj = exp(dot_x(qkv_at(r, j, 1u)) - l);
    var dp = vec4f(0.0);
    for (var d4 = 0u; d4 < D4; d4++) { dp += y[d4] * ld_qkv(qkv_at(r, j, 2u), d4); }
    let ds = pj * (hsum(dp) - dl);
    for (var d4 = 0u; d4 < D4; d4++) { acc[d4] += ds * ld_qkv(qkv_at(r, j, 1u), d4); }
  }
  for (var d4 = 0u; d4 < D4; d4++) { st_dqkv(qkv_at(r, r.t, 0u), d4, acc[d4] * p.scale); }
}

@compute @workgroup_size(WG)
fn backward_dkv(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let r = own_row(wid, lid, nwg);   // r.t is the key row j
  if (!r.valid) { return; }
  for (var d4 = 0u; d4 < D4; d4++) {
    x[d4] = ld_qkv(qkv_at(r, r.t, 1u), d4) * p.scale;
    y[d4] = ld_qkv(qkv_at(r, r.t, 2u), d4);
    acc[d4] = vec4f(0.0);
    acc2[d4] = vec4f(0.0);
  }
  let bh0 = r.i - r.t;   // (b·H + h)·T: lse index of query 0
  for (var i = r.t; i < p.T; i++) {
    let pi = exp(dot_x(qkv_at(r, i, 0u)) - lse_in[bh0 + i]);
    var dp = vec4f(0.0);
    for (var d4 = 0u; d4 < D4; d4++) { dp += ld_dout(out_at(r, i), d4) * y[d4]; }
    let ds = pi * (hsum(dp) - delta_of(r, i));
    for (var d4 = 0u; d4 < D4; d4++) {
      acc2[d4] += pi * ld_dout(out_at(r, i), d4);
      acc[d4] += ds * ld_qkv(qkv_at(r, i, 0u), d4);
    }
  }
  for (var d4 = 0u; d4 < D4; d4++) {
    st_dqkv(qkv_at(r, r.t, 1u), d4, acc[d4] * p.scale);
    st_dqkv(qkv_at(r, r.t, 2u), d4, acc2[d4]);
  }
}
