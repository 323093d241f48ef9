// Residual add and in-place accumulation.
// add:                 y   = a + b                      (the residual connection x + f(x))
// add_scaled:          acc = acc + scale·x              (gradient accumulation, replica averaging)
// add_scaled_self:     acc = acc + scale·acc            (the same when acc and x are one tensor: WebGPU forbids
//                                                         binding a buffer as writable and readable in one pass)
// There is no backward kernel: the gradient of y = a + b is dy for both a and b (see residual.ts).

struct AddParams { n: u32 }
struct ScaledParams { n: u32, scale: f32 }

@group(0) @binding(0) var<uniform> ap: AddParams;
@group(0) @binding(0) var<uniform> sp: ScaledParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

override WG: u32 = 256;

fn flat(wid: vec3u, lid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn add(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= ap.n) { return; }
  y[i] = a[i] + b[i];
}

@compute @workgroup_size(WG)
fn add_scaled(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= sp.n) { return; }
  acc[i] = acc[i] + sp.scale * x[i];
}

@compute @workgroup_size(WG)
fn add_scaled_self(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= sp.n) { return; }
  let v = acc[i];
  acc[i] = v + sp.scale * v;
}
