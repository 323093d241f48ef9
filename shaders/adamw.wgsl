// AdamW with decoupled weight decay, in place, one invocation per element (PyTorch / the golden model):
//   g  = grad · s                         (s = gradScale[0] from clipping in step_scaled, else 1)
//   w -= lr·wd·w                          (decay first; lr_wd = 0 for tensors that do not decay)
//   m  = β1·m + (1−β1)·g
//   v  = β2·v + (1−β2)·g²
//   w -= lr · (m·inv_bc1) / (√(v·inv_bc2) + eps)     inv_bcK = 1/(1−βK^t), computed on the host in float64
// step_scaled skips the element untouched (w, m, v) when s is 0 or non-finite: clipping sets s = 0 for
// NaN/Inf gradients, so every element of every tensor skips and the step is a no-op.

struct Params {
  n: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  eps: f32,
  lr_wd: f32,
  inv_bc1: f32,
  inv_bc2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m_buf: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_buf: array<f32>;
@group(0) @binding(5) var<storage, read> grad_scale: array<f32>;   // step_scaled only

override WG: u32 = 256;

fn flat(wid: vec3u, lid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

// Bit test, not comparisons: WGSL lets compilers assume floats are finite.
fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn update(i: u32, g: f32) {
  var w = param[i];
  w = w - p.lr_wd * w;
  let m = p.beta1 * m_buf[i] + p.one_minus_beta1 * g;
  let v = p.beta2 * v_buf[i] + p.one_minus_beta2 * g * g;
  m_buf[i] = m;
  v_buf[i] = v;
  param[i] = w - p.lr * (m * p.inv_bc1) / (sqrt(v * p.inv_bc2) + p.eps);
}

@compute @workgroup_size(WG)
fn step(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= p.n) { return; }
  update(i, grad[i]);
}

@compute @workgroup_size(WG)
fn step_scaled(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= p.n) { return; }
  let s = grad_scale[0];
  if (s == 0.0 || !is_finite(s)) { return; }
  update(i, grad[i] * s);
}
