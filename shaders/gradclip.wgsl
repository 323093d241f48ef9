// Global gradient-norm clipping, deterministic (fixed reduction order, no atomics).
// partial:        one dispatch per gradient tensor; workgroup g sums the squares of its CHUNK = WG·ITEMS elements
//                 (each invocation a fixed strided subset, then a tree in workgroup memory) into partials[base + g].
// finalize:       one workgroup sums all partial slots in a fixed order: norm = √Σ.
// finalize_clip:  the same, plus scale = min(1, max_norm / (norm + 1e-6)), or 0 when norm is NaN/±Inf
//                 (AdamW skips the update when its gradient scale is 0, so broken gradients never reach weights).
// scale_in_place: t *= scale[0], for callers that want the clipped gradients themselves.
// A squared sum above f32 max (‖g‖ ≳ 1.8e19) reads as Inf and is treated like a non-finite gradient.

struct PartialParams { n: u32, base: u32, groups: u32 }
struct FinalParams { count: u32, max_norm: f32 }
struct ScaleParams { n: u32 }

@group(0) @binding(0) var<uniform> pp: PartialParams;
@group(0) @binding(0) var<uniform> fp: FinalParams;
@group(0) @binding(0) var<uniform> sp: ScaleParams;

@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials_out: array<f32>;

@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> scale_out: array<f32>;

@group(0) @binding(1) var<storage, read_write> t: array<f32>;
@group(0) @binding(2) var<storage, read> scale_in: array<f32>;

override WG: u32 = 256;     // a power of two (the tree halves it)
override ITEMS: u32 = 16;   // elements per invocation in `partial`

var<workgroup> sums: array<f32, WG>;

// Pairwise tree over sums[0..WG): the same additions in the same order on every run.
fn tree_reduce(lid: u32) -> f32 {
  var stride = WG / 2u;
  loop {
    if (stride == 0u) { break; }
    workgroupBarrier();
    if (lid < stride) { sums[lid] = sums[lid] + sums[lid + stride]; }
    stride = stride / 2u;
  }
  workgroupBarrier();
  return sums[0];
}

// Bit test, not x != x: WGSL lets compilers assume floats are finite, so comparisons cannot detect NaN/Inf.
fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(WG)
fn partial(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= pp.groups) { return; }   // padding of a folded grid; uniform per workgroup, so barriers stay legal
  let start = g * WG * ITEMS;
  var s = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = start + k * WG + lid.x;
    if (i < pp.n) {
      let v = grad[i];
      s = s + v * v;
    }
  }
  sums[lid.x] = s;
  let total = tree_reduce(lid.x);
  if (lid.x == 0u) { partials_out[pp.base + g] = total; }
}

fn sum_partials(lid: u32) -> f32 {
  var s = 0.0;
  for (var i = lid; i < fp.count; i += WG) { s = s + partials[i]; }
  sums[lid] = s;
  return tree_reduce(lid);
}

@compute @workgroup_size(WG)
fn finalize(@builtin(local_invocation_id) lid: vec3u) {
  let total = sum_partials(lid.x);
  if (lid.x == 0u) { norm_out[0] = sqrt(total); }
}

@compute @workgroup_size(WG)
fn finalize_clip(@builtin(local_invocation_id) lid: vec3u) {
  let total = sum_partials(lid.x);
  if (lid.x == 0u) {
    let norm = sqrt(total);
    norm_out[0] = norm;
    scale_out[0] = select(0.0, min(1.0, fp.max_norm / (norm + 1e-6)), is_finite(norm));
  }
}

@compute @workgroup_size(WG)
fn scale_in_place(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
  if (i >= sp.n) { return; }
  t[i] = t[i] * scale_in[0];
}
