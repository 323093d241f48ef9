// Causal attention of t new query rows over a KV cache (inference: a prefill chunk, or t = 1 to decode).
//
// qkv [t, 3C]: the new rows' q | k | v (columns [0,C), [C,2C), [2C,3C)), head h at columns h·D..(h+1)·D.
// kv  [cap, 2C]: the cache, row j = k_j | v_j (the k and v parts of qkv row j, side by side), cap ≥ past + t.
// New query row i has absolute position past + i and sees keys 0 .. past + i.
//
// append:  copies the new rows' k | v into cache rows past .. past + t − 1 (before `partial` reads them).
// partial: flash-decoding. The keys of each (head, row) are cut into S splits of KS keys; one invocation per
//          (head, split, row) runs an online softmax over its split and writes the unnormalised partial
//          (max m, sum l of exp(s − m), Σ exp(s − m)·v) to scratch. Splits give a single decode row
//          (t = 1) parallelism along the cache, which is where its work is; a long prefill chunk has
//          enough rows and runs with S = 1. Row i is the fastest index, so neighbouring invocations read
//          the same keys (cache lines shared on GPUs).
// combine: one invocation per (head, row, 4 columns) merges the S partials in split order:
//          out = Σ_s e^{m_s − M}·acc_s / Σ_s e^{m_s − M}·l_s, lse = M + log(Σ_s e^{m_s − M}·l_s).
// No atomics; every sum runs in a fixed order, so reruns are bit-identical for a given plan.

struct Params {
  t: u32,      // new rows
  past: u32,   // cached rows before them
  H: u32,      // heads
  C: u32,      // channels (H·D)
  S: u32,      // splits per (head, row)
  KS: u32,     // keys per split
  scale: f32,  // 1/sqrt(D)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
// append
@group(0) @binding(2) var<storage, read_write> kv_w: array<f32>;
// partial
@group(0) @binding(2) var<storage, read> kv: array<f32>;
@group(0) @binding(3) var<storage, read_write> ml: array<f32>;     // [H·S·t, 2]: m, l
@group(0) @binding(4) var<storage, read_write> pacc: array<f32>;   // [H·S·t, D]
// combine
@group(0) @binding(3) var<storage, read> ml_in: array<f32>;
@group(0) @binding(4) var<storage, read> pacc_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;    // [t, C]
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;    // [H·t], index h·t + i

#include "lib/attention-head.wgsl"

override WG: u32 = 64;

var<private> q: array<vec4f, MAXD4>;
var<private> acc: array<vec4f, MAXD4>;

fn flat(wid: vec3u, lid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

// Four elements of a head vector at `base` of kv; lanes past D read as 0 (D % 4 ≠ 0), as ld_qkv.
fn ld_kv(base: u32, d4: u32) -> vec4f {
  let d = d4 * 4u;
  if (DH % 4u == 0u || d + 3u < DH) {
    return vec4f(kv[base + d], kv[base + d + 1u], kv[base + d + 2u], kv[base + d + 3u]);
  }
  var r = vec4f(0.0);
  for (var c = 0u; c < 4u; c++) { if (d + c < DH) { r[c] = kv[base + d + c]; } }
  return r;
}

@compute @workgroup_size(WG)
fn append(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let e = flat(wid, lid, nwg);
  let w = 2u * p.C;
  if (e >= p.t * w) { return; }
  let r = e / w;
  let c = e % w;
  kv_w[(p.past + r) * w + c] = qkv[r * 3u * p.C + p.C + c];
}

@compute @workgroup_size(WG)
fn partial(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let f = flat(wid, lid, nwg);   // (h·S + s)·t + i
  if (f >= p.H * p.S * p.t) { return; }
  let i = f % p.t;
  let s = (f / p.t) % p.S;
  let h = f / (p.t * p.S);
  let hoff = h * DH;
  let qb = i * 3u * p.C + hoff;
  for (var d4 = 0u; d4 < D4; d4++) {
    q[d4] = ld_qkv(qb, d4) * p.scale;
    acc[d4] = vec4f(0.0);
  }
  var m = NEG;
  var l = 0.0;
  let k0 = s * p.KS;
  let kend = min(k0 + p.KS, p.past + i + 1u);   // causal: keys ≤ past + i
  for (var j = k0; j < kend; j++) {
    let kb = j * 2u * p.C + hoff;
    var dot4 = vec4f(0.0);
    for (var d4 = 0u; d4 < D4; d4++) { dot4 += q[d4] * ld_kv(kb, d4); }
    let sc = hsum(dot4);
    let mn = max(m, sc);
    let corr = exp(m - mn);
    let pc = exp(sc - mn);
    l = l * corr + pc;
    m = mn;
    let vb = kb + p.C;
    for (var d4 = 0u; d4 < D4; d4++) { acc[d4] = acc[d4] * corr + pc * ld_kv(vb, d4); }
  }
  // A split wholly past the row's last key leaves m = NEG, l = 0, acc = 0: it weighs 0 in combine.
  ml[2u * f] = m;
  ml[2u * f + 1u] = l;
  let ab = f * DH;
  for (var d4 = 0u; d4 < D4; d4++) {
    for (var c = 0u; c < 4u; c++) { if (d4 * 4u + c < DH) { pacc[ab + d4 * 4u + c] = acc[d4][c]; } }
  }
}

@compute @workgroup_size(WG)
fn combine(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let g = flat(wid, lid, nwg);   // ((h·t + i)·D4 + d4)
  if (g >= p.H * p.t * D4) { return; }
  let d4 = g % D4;
  let i = (g / D4) % p.t;
  let h = g / (D4 * p.t);
  // Split 0 holds key 0, which every row sees: M is a real score.
  var mx = NEG;
  for (var s = 0u; s < p.S; s++) { mx = max(mx, ml_in[2u * ((h * p.S + s) * p.t + i)]); }
  var l = 0.0;
  var o = vec4f(0.0);
  for (var s = 0u; s < p.S; s++) {
    let f = (h * p.S + s) * p.t + i;
    let w = exp(ml_in[2u * f] - mx);
    l += w * ml_in[2u * f + 1u];
    let ab = f * DH + d4 * 4u;
    var a = vec4f(0.0);
    for (var c = 0u; c < 4u; c++) { if (d4 * 4u + c < DH) { a[c] = pacc_in[ab + c]; } }
    o += w * a;
  }
  o /= l;
  let ob = i * p.C + h * DH + d4 * 4u;
  for (var c = 0u; c < 4u; c++) { if (d4 * 4u + c < DH) { out[ob + c] = o[c]; } }
  if (d4 == 0u) { lse[h * p.t + i] = mx + log(l); }
}
