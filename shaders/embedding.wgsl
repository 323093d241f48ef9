// Token + position embedding (GPT-2): x[b·T + t, c] = wte[ids[b·T + t], c] + wpe[t, c].
// forward:      one invocation per output element. An id outside [0, V) (the kernel cannot throw) gives a
//               NaN row rather than another token's embedding.
// backward_wte: one invocation per (token, channel): dwte[v, c] = Σ dx[p, c] over the positions p holding
//               token v, ascending, read from a CSR (offsets [V+1], positions [B·T]) built on the host.
//               Fixed order and no atomics, so repeated tokens sum bit-identically run to run.
// backward_wpe: one invocation per (t, channel): dwpe[t, c] = Σ_b dx[b·T + t, c], b ascending.

struct Params {
  n: u32, // B·T positions
  t: u32, // sequence length T
  c: u32, // channels
  v: u32, // vocabulary
  b: u32, // batch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> wte: array<f32>;
@group(0) @binding(3) var<storage, read> wpe: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // forward: x; backward: dwte or dwpe
@group(0) @binding(5) var<storage, read> dx: array<f32>;
@group(0) @binding(6) var<storage, read> offsets: array<u32>;
@group(0) @binding(7) var<storage, read> positions: array<u32>;

override WG: u32 = 256;

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
  if (i >= p.n * p.c) { return; }
  let pos = i / p.c;
  let ch = i % p.c;
  let id = ids[pos];
  if (id < 0 || u32(id) >= p.v) {
    out[i] = bitcast<f32>(0x7fc00000u | min(p.n, 0u)); // NaN; a constant bit pattern would be rejected
    return;
  }
  out[i] = wte[u32(id) * p.c + ch] + wpe[(pos % p.t) * p.c + ch];
}

@compute @workgroup_size(WG)
fn backward_wte(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= p.v * p.c) { return; }
  let tok = i / p.c;
  let ch = i % p.c;
  let end = offsets[tok + 1u];
  var s = 0.0;
  for (var k = offsets[tok]; k < end; k++) {
    s += dx[positions[k] * p.c + ch];
  }
  out[i] = s;
}

@compute @workgroup_size(WG)
fn backward_wpe(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = flat(wid, lid, nwg);
  if (i >= p.t * p.c) { return; }
  var s = 0.0;
  for (var b = 0u; b < p.b; b++) {
    s += dx[b * p.t * p.c + i]; // (b·T + t)·C + c with i = t·C + c
  }
  out[i] = s;
}
