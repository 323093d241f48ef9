// Naive matmul, the benchmark baseline: one invocation per output, a plain loop over k.
// C[M,N] = op(A)·op(B) (+bias) (+C), with op(A)[m,k] = a[m·sam + k·sak] and op(B)[k,n] = b[k·sbk + n·sbn]
// (transposes are strides). Sums k = 0 … K-1 in order: deterministic.

struct Params {
  M: u32, N: u32, K: u32,
  sam: u32, sak: u32,
  sbk: u32, sbn: u32,
  flags: u32,   // bit 0: add bias[n]; bit 1: add the previous out[m,n] (accumulate)
  wx: u32,      // (register kernel only)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // bound to A when there is no bias
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

override WX: u32 = 16;
override WY: u32 = 16;

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n = wid.x * WX + lid.x;
  let m = (wid.y + wid.z * nwg.y) * WY + lid.y;   // row blocks fold into z past 65535 workgroups
  if (m >= p.M || n >= p.N) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.K; k++) {
    s = fma(a[m * p.sam + k * p.sak], b[k * p.sbk + n * p.sbn], s);
  }
  let i = m * p.N + n;
  if ((p.flags & 1u) != 0u) { s += bias[n]; }
  if ((p.flags & 2u) != 0u) { s += out[i]; }
  out[i] = s;
}
