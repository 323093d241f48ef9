// Naive matmul, the benchmark baseline: one invocation per output, a plain loop over k.
// C[M,N] = op(A)·op(B) (+bias) (+C), with op(A)[m,k] = a[m·sam + k·sak] and op(B)[k,n] = b[k·sbk + n·sbn]
// (transposes are strides). Sums k = 0 … K-1 in order: deterministic.

#include "lib/matmul-io.wgsl"   // Params, bindings 0..4, epilogue

override WX: u32 = 16;
override WY: u32 = 16;

@compute @workgroup_size(WX, WY)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let n = wid.x * WX + lid.x;
  let m = (wid.y + wid.z * nwg.y) * WY + lid.y;   // row blocks fold into z past 65535 workgroups
  if (m >= p.M || n >= p.N) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.K; k++) {
    s = fma(a[m * p.sam + k * p.sak], b[k * p.sbk + n * p.sbn], s);
  }
  let i = m * p.N + n;
  out[i] = epilogue(s, i, n);
}
