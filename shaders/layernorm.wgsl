// LayerNorm over the last dimension (GPT-2): y = (x − mean)·rstd·γ + β, rstd = 1/√(var + eps), biased var.
// forward:          one workgroup per row → y, mean, rstd
// backward_dx:      one workgroup per row → dx = rstd·(dn − mean(dn) − x̂·mean(dn·x̂)), dn = dy·γ, x̂ = (x − mean)·rstd
// backward_partial: one invocation per (chunk of RC rows, column) → partial Σ dy·x̂ and Σ dy over its rows
// backward_reduce:  one invocation per column → dγ, dβ = Σ of the partials in chunk order
// Every sum has a fixed order (strided per invocation, then a fixed tree; rows in order), so results are
// bit-identical run to run. No atomics.

struct Params {
  n: u32,      // rows
  c: u32,      // columns
  eps: f32,
  rc: u32,     // rows per chunk (backward_partial)
  chunks: u32, // ⌈n / rc⌉
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(7) var<storage, read> mean_in: array<f32>;
@group(0) @binding(8) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(9) var<storage, read> dy: array<f32>;
@group(0) @binding(10) var<storage, read_write> dx: array<f32>;
// [2·chunks·c]: Σ dy·x̂ partials for chunk k at k·c, then Σ dy partials at (chunks + k)·c
@group(0) @binding(11) var<storage, read_write> partial: array<f32>;
@group(0) @binding(12) var<storage, read> partial_in: array<f32>;
@group(0) @binding(13) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(14) var<storage, read_write> dbeta: array<f32>;

// Row kernels: WG is a power of two (the tree halves it). Elementwise kernels use the same constant.
override WG: u32 = 128;
var<workgroup> red: array<vec2f, WG>;

// Sums v over the workgroup (two sums at once); every invocation gets the result.
fn reduce2(lid: u32, v: vec2f) -> vec2f {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier(); // red is reused by the next reduction
  return r;
}

@compute @workgroup_size(WG)
fn forward(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.n) { return; } // uniform: depends only on the workgroup
  let base = row * p.c;
  let inv_c = 1.0 / f32(p.c);
  var s = 0.0;
  for (var i = lid.x; i < p.c; i += WG) { s += x[base + i]; }
  let mean = reduce2(lid.x, vec2f(s, 0.0)).x * inv_c;
  // Second pass over (x − mean)² rather than E[x²] − mean²: no cancellation when |mean| ≫ std.
  var q = 0.0;
  for (var i = lid.x; i < p.c; i += WG) {
    let d = x[base + i] - mean;
    q += d * d;
  }
  let rstd = 1.0 / sqrt(reduce2(lid.x, vec2f(q, 0.0)).x * inv_c + p.eps);
  for (var i = lid.x; i < p.c; i += WG) {
    y[base + i] = (x[base + i] - mean) * rstd * gamma[i] + beta[i];
  }
  if (lid.x == 0u) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

@compute @workgroup_size(WG)
fn backward_dx(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.n) { return; }
  let base = row * p.c;
  let mean = mean_in[row];
  let rstd = rstd_in[row];
  var acc = vec2f(0.0);
  for (var i = lid.x; i < p.c; i += WG) {
    let dn = dy[base + i] * gamma[i];
    acc += vec2f(dn, dn * (x[base + i] - mean) * rstd);
  }
  let m = reduce2(lid.x, acc) / f32(p.c); // (mean(dn), mean(dn·x̂))
  for (var i = lid.x; i < p.c; i += WG) {
    let xhat = (x[base + i] - mean) * rstd;
    dx[base + i] = rstd * (dy[base + i] * gamma[i] - m.x - xhat * m.y);
  }
}

fn flat(wid: vec3u, lid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn backward_partial(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= p.chunks * p.c) { return; }
  let k = i / p.c;
  let col = i % p.c;
  let r1 = min(p.n, (k + 1u) * p.rc);
  var dg = 0.0;
  var db = 0.0;
  for (var r = k * p.rc; r < r1; r++) {
    let g = dy[r * p.c + col];
    dg += g * (x[r * p.c + col] - mean_in[r]) * rstd_in[r];
    db += g;
  }
  partial[i] = dg;
  partial[p.chunks * p.c + i] = db;
}

@compute @workgroup_size(WG)
fn backward_reduce(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let col = flat(wid, lid, nwg);
  if (col >= p.c) { return; }
  var dg = 0.0;
  var db = 0.0;
  for (var k = 0u; k < p.chunks; k++) {
    dg += partial_in[k * p.c + col];
    db += partial_in[(p.chunks + k) * p.c + col];
  }
  dgamma[col] = dg;
  dbeta[col] = db;
}
