// GELU, tanh approximation (GPT-2): y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// forward:  y  = gelu(x)
// backward: dx = dy · gelu'(x)

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;   // forward: y
@group(0) @binding(3) var<storage, read> dy: array<f32>;           // backward only

override WG: u32 = 256;
const K0: f32 = 0.7978845608028654; // √(2/π)
const K1: f32 = 0.044715;

// 0.5·(1 + tanh(u)) = sigmoid(2u). Computing the sigmoid directly (never exp of a large positive number)
// keeps tiny values exact where 1 + tanh(u) would cancel to 0 in float32, and avoids drivers whose tanh
// returns NaN for large |u|.
fn half_one_plus_tanh(u: f32) -> f32 {
  let e = exp(-2.0 * abs(u));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), u >= 0.0);
}

fn flat(wid: vec3u, lid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn forward(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= p.n) { return; }
  let v = x[i];
  out[i] = v * half_one_plus_tanh(K0 * (v + K1 * v * v * v));
}

@compute @workgroup_size(WG)
fn backward(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= p.n) { return; }
  let v = x[i];
  let s = half_one_plus_tanh(K0 * (v + K1 * v * v * v));   // s = ½(1 + t)
  let du = K0 * (1.0 + 3.0 * K1 * v * v);
  // d/dv [v·s] = s + v·ds/du·du, with ds/du = ½(1 − t²) = 2s(1 − s)
  out[i] = dy[i] * (s + v * 2.0 * s * (1.0 - s) * du);
}
