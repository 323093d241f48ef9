// Fused softmax + cross-entropy over rows of logits [N, V] with integer targets and an ignore index (as llm.c):
//   loss_r   = logsumexp(z_r) − z_r[t_r]                        (0 where t_r = ignore)
//   loss     = Σ_r loss_r / count,  count = #{r : t_r ≠ ignore}  (0 when count = 0)
//   dlogit_r = (softmax(z_r) − onehot(t_r)) / count              (0 rows where ignored)
// count:           one workgroup → count of non-ignored rows (read by the others, so no host round trip)
// forward / fused: one workgroup per row; max and Σexp in one online pass (running max, rescaled sum), then
//                  a fixed tree; `fused` also writes the row's gradient
// mean:            one workgroup → loss
// A target outside [0, V) that is not the ignore index cannot be reported from here, so it makes that row's
// loss (and gradient) NaN, which poisons the mean visibly instead of reading another row's logit.
// All sums run in a fixed order: bit-identical results run to run; no atomics.

struct Params {
  n: u32,
  v: u32,
  ignore: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> count_out: array<u32>;
@group(0) @binding(4) var<storage, read> count_in: array<u32>;
@group(0) @binding(5) var<storage, read_write> losses: array<f32>;
@group(0) @binding(6) var<storage, read> losses_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> loss: array<f32>;
@group(0) @binding(8) var<storage, read_write> dlogits: array<f32>;

override WG: u32 = 256; // a power of two (the trees halve it)
const LOWEST: f32 = -0x1.fffffep+127f; // stands in for −∞: exp(LOWEST − m) = 0 and LOWEST − LOWEST = 0

var<workgroup> red2: array<vec2f, WG>;
var<workgroup> redf: array<f32, WG>;
var<workgroup> redu: array<u32, WG>;

// A quiet NaN. A constant bit pattern would be a const-expression, and NaN const-expressions are rejected.
fn nan() -> f32 {
  return bitcast<f32>(0x7fc00000u | min(p.n, 0u));
}

// Merges two (max, Σexp(z − max)) pairs.
fn merge(a: vec2f, b: vec2f) -> vec2f {
  let m = max(a.x, b.x);
  return vec2f(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

// (max, Σ exp(z − max)) of one row, for every invocation of the workgroup. Rescaling the running sum when the
// max grows keeps every exp ≤ 1: stable for logits of any magnitude, one read of the row.
fn row_stats(base: u32, lid: u32) -> vec2f {
  var m = LOWEST;
  var s = 0.0;
  for (var i = lid; i < p.v; i += WG) {
    let z = logits[base + i];
    if (z > m) {
      s = s * exp(m - z) + 1.0;
      m = z;
    } else {
      s += exp(z - m);
    }
  }
  red2[lid] = vec2f(m, s);
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k = k >> 1u) {
    if (lid < k) { red2[lid] = merge(red2[lid], red2[lid + k]); }
    workgroupBarrier();
  }
  return red2[0];
}

fn row_of(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// Loss of one row given its stats; 0 when ignored, NaN for an invalid target.
fn row_loss(row: u32, st: vec2f) -> f32 {
  let t = targets[row];
  if (t == p.ignore) { return 0.0; }
  if (t < 0 || u32(t) >= p.v) { return nan(); }
  // (max − z_t) first: both are large for large logits, their difference is not.
  return (st.x - logits[row * p.v + u32(t)]) + log(st.y);
}

@compute @workgroup_size(WG)
fn count(@builtin(local_invocation_id) lid: vec3u) {
  var c = 0u;
  for (var i = lid.x; i < p.n; i += WG) { c += select(1u, 0u, targets[i] == p.ignore); }
  redu[lid.x] = c;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k = k >> 1u) {
    if (lid.x < k) { redu[lid.x] += redu[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { count_out[0] = redu[0]; }
}

@compute @workgroup_size(WG)
fn forward(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let row = row_of(wid, nwg);
  if (row >= p.n) { return; } // uniform: depends only on the workgroup
  let st = row_stats(row * p.v, lid.x);
  if (lid.x == 0u) { losses[row] = row_loss(row, st); }
}

@compute @workgroup_size(WG)
fn fused(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let row = row_of(wid, nwg);
  if (row >= p.n) { return; }
  let base = row * p.v;
  let st = row_stats(base, lid.x);
  if (lid.x == 0u) { losses[row] = row_loss(row, st); }
  let t = targets[row];
  if (t == p.ignore) {
    for (var i = lid.x; i < p.v; i += WG) { dlogits[base + i] = 0.0; }
    return;
  }
  let valid = t >= 0 && u32(t) < p.v;
  // count ≥ 1 here: this row is not ignored.
  let scale = select(nan(), 1.0 / f32(max(count_in[0], 1u)), valid);
  let inv_sum = 1.0 / st.y;
  for (var i = lid.x; i < p.v; i += WG) {
    let prob = exp(logits[base + i] - st.x) * inv_sum;
    dlogits[base + i] = (prob - select(0.0, 1.0, i32(i) == t)) * scale;
  }
}

@compute @workgroup_size(WG)
fn mean(@builtin(local_invocation_id) lid: vec3u) {
  var s = 0.0;
  for (var i = lid.x; i < p.n; i += WG) { s += losses_in[i]; }
  redf[lid.x] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k = k >> 1u) {
    if (lid.x < k) { redf[lid.x] += redf[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let c = count_in[0];
    loss[0] = select(0.0, redf[0] / f32(c), c > 0u);
  }
}
