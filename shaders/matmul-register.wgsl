// Register-blocked matmul for CPU Vulkan drivers (lavapipe, SwiftShader): C[M,N] = op(A)·op(B) (+bias) (+C).
// No workgroup memory and no barriers. Each invocation owns an 8-row × 16-column block of C, kept in eight
// mat4x4f accumulators (row i, columns col0+4j … col0+4j+3 = column j of acc.r_i), and walks k once.
//
// Why this shape on a CPU driver: lavapipe runs 8 invocations per AVX2 vector, and every storage-buffer load
// is emulated lane by lane (bounds check, extract, insert: ~10 instructions per lane and scalar), while a
// vector multiply-add covers all 8 lanes in one. So the cost is the number of scalars loaded per invocation,
// and an 8×16 block loads 8 + 16 scalars per k for 128 multiply-adds (a 4×16 block: 20 for 64; tiled
// kernels reload from workgroup memory, lane by lane again, and pay for barriers, which are coroutine
// switches on a CPU). Larger blocks compile very slowly on lavapipe (LLVM spends seconds per pipeline).
//
// op(A)[m,k] = a[m·sam + k·sak] and op(B)[k,n] = b[k·sbk + n·sbn]: transposes are strides, not copies.
// Ragged edges: rows ≥ M and columns ≥ N read the last valid row / column (clamped, so no branch in the
// k loop) and are not stored. Deterministic: every output sums k = 0 … K-1 in order.
//
// Entry points: `main` loads B element by element (any strides, any N); `main_vec4` loads B rows as vec4
// when B is stored [K,N] with N % 4 == 0 (sbn = 1, sbk = N), which is cheaper per element on every driver.

struct Params {
  M: u32, N: u32, K: u32,
  sam: u32, sak: u32,
  sbk: u32, sbn: u32,
  flags: u32,   // bit 0: add bias[n]; bit 1: add the previous out[m,n] (accumulate)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;      // `main` only
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // bound to A when there is no bias
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> b4: array<vec4f>;   // `main_vec4` only: B viewed as vec4

override WX: u32 = 8;   // invocations along columns (16 columns each)
override WY: u32 = 8;   // invocations along rows (8 rows each)

struct AOff { o0: u32, o1: u32, o2: u32, o3: u32, o4: u32, o5: u32, o6: u32, o7: u32 }
struct Acc { r0: mat4x4f, r1: mat4x4f, r2: mat4x4f, r3: mat4x4f, r4: mat4x4f, r5: mat4x4f, r6: mat4x4f, r7: mat4x4f }

// (first row, first column) of this invocation's block. Row blocks fold into z past 65535 workgroups.
fn block_origin(wid: vec3u, lid: vec3u, nwg: vec3u) -> vec2u {
  let rb = wid.y + wid.z * nwg.y;
  return vec2u((rb * WY + lid.y) * 8u, (wid.x * WX + lid.x) * 16u);
}

fn a_offsets(row0: u32) -> AOff {
  let last = p.M - 1u;
  return AOff(
    min(row0, last) * p.sam, min(row0 + 1u, last) * p.sam, min(row0 + 2u, last) * p.sam, min(row0 + 3u, last) * p.sam,
    min(row0 + 4u, last) * p.sam, min(row0 + 5u, last) * p.sam, min(row0 + 6u, last) * p.sam, min(row0 + 7u, last) * p.sam,
  );
}

// acc += op(A)[rows, k] ⊗ op(B)[k, cols], with bk holding op(B)[k, col0 … col0+15].
fn fma_k(acc: Acc, o: AOff, k: u32, bk: mat4x4f) -> Acc {
  let ka = k * p.sak;
  return Acc(
    acc.r0 + a[o.o0 + ka] * bk, acc.r1 + a[o.o1 + ka] * bk, acc.r2 + a[o.o2 + ka] * bk, acc.r3 + a[o.o3 + ka] * bk,
    acc.r4 + a[o.o4 + ka] * bk, acc.r5 + a[o.o5 + ka] * bk, acc.r6 + a[o.o6 + ka] * bk, acc.r7 + a[o.o7 + ka] * bk,
  );
}

fn b_at(base: u32, col: u32) -> f32 {
  return b[base + min(col, p.N - 1u) * p.sbn];
}

fn b_row(k: u32, col0: u32) -> mat4x4f {
  let base = k * p.sbk;
  return mat4x4f(
    b_at(base, col0), b_at(base, col0 + 1u), b_at(base, col0 + 2u), b_at(base, col0 + 3u),
    b_at(base, col0 + 4u), b_at(base, col0 + 5u), b_at(base, col0 + 6u), b_at(base, col0 + 7u),
    b_at(base, col0 + 8u), b_at(base, col0 + 9u), b_at(base, col0 + 10u), b_at(base, col0 + 11u),
    b_at(base, col0 + 12u), b_at(base, col0 + 13u), b_at(base, col0 + 14u), b_at(base, col0 + 15u),
  );
}

fn b_row_vec4(k: u32, col0: u32) -> mat4x4f {
  let base = k * (p.N / 4u);
  let last = p.N / 4u - 1u;
  let c4 = col0 / 4u;
  return mat4x4f(b4[base + min(c4, last)], b4[base + min(c4 + 1u, last)], b4[base + min(c4 + 2u, last)], b4[base + min(c4 + 3u, last)]);
}

// The epilogue is written as loops that rotate the accumulators instead of 128 unrolled stores: each store
// (with its bias and accumulate loads) expands to per-lane code on CPU drivers, and unrolled it made
// lavapipe spend a minute compiling the pipeline.
fn store1(x: f32, row: u32, col: u32) {
  if (col >= p.N) { return; }
  let i = row * p.N + col;
  var v = x;
  if ((p.flags & 1u) != 0u) { v += bias[col]; }
  if ((p.flags & 2u) != 0u) { v += out[i]; }
  out[i] = v;
}

fn store_row(r: mat4x4f, row: u32, col0: u32) {
  var m = r;
  for (var j = 0u; j < 4u && col0 + 4u * j < p.N; j++) {
    var v = m[0];
    for (var c = 0u; c < 4u; c++) {
      store1(v.x, row, col0 + 4u * j + c);
      v = v.yzwx;
    }
    m = mat4x4f(m[1], m[2], m[3], m[0]);
  }
}

fn store_block(acc: Acc, row0: u32, col0: u32) {
  var r = acc;
  for (var i = 0u; i < 8u && row0 + i < p.M; i++) {
    store_row(r.r0, row0 + i, col0);
    r = Acc(r.r1, r.r2, r.r3, r.r4, r.r5, r.r6, r.r7, r.r0);
  }
}

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = block_origin(wid, lid, nwg);
  let ao = a_offsets(o.x);
  var acc = Acc();
  for (var k = 0u; k < p.K; k++) {
    acc = fma_k(acc, ao, k, b_row(k, o.y));
  }
  store_block(acc, o.x, o.y);
}

@compute @workgroup_size(WX, WY)
fn main_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = block_origin(wid, lid, nwg);
  let ao = a_offsets(o.x);
  var acc = Acc();
  for (var k = 0u; k < p.K; k++) {
    acc = fma_k(acc, ao, k, b_row_vec4(k, o.y));
  }
  store_block(acc, o.x, o.y);
}
