// Register-blocked matmul for CPU Vulkan drivers (lavapipe, SwiftShader): C[M,N] = op(A)·op(B) (+bias) (+C).
// No workgroup memory and no barriers. Each invocation owns an 8-row × 16-column block of C, kept in eight
// mat4x4f accumulators (row i, columns col0+4j … col0+4j+3 = column j of acc.r_i), and walks k once.
//
// Why this shape on a CPU driver: lavapipe runs 8 invocations per AVX2 vector, and every storage-buffer load
// is emulated lane by lane (exec-mask test, bounds check, extract, insert: ~10 instructions per lane and
// scalar; ~6 per component of a vec4 load), while a vector multiply-add covers all 8 lanes in one. So the
// cost is the number of scalars loaded per invocation, and an 8×16 block loads 8 + 16 scalars per k for
// 128 multiply-adds (a 4×16 block: 20 for 64). Tiled kernels reload from workgroup memory, lane by lane
// again, and pay for barriers (coroutine switches on a CPU). Bigger blocks or unrolled k compile very
// slowly on lavapipe (LLVM spends seconds to a minute per pipeline), so blocks stay 8×16.
//
// op(A)[m,k] = a[m·sam + k·sak] and op(B)[k,n] = b[k·sbk + n·sbn]: transposes are strides, not copies.
// Ragged edges: rows ≥ M and columns ≥ N read the last valid row / column (clamped, so no branch in the
// k loop) and are not stored. Deterministic: every output sums k = 0 … K-1 in order, in every entry point.
//
// Entry points (the wrapper picks the most vectorised one the layout allows):
//   main          any strides, any sizes: every element loaded on its own.
//   main_vec4     B stored [K,N], N % 4 == 0: B rows as vec4 (op(A) by strides).
//   main_at_vec4  also A stored [K,M] (transA), M % 4 == 0: the 8 rows of op(A) at one k are 2 vec4s.
//   main_bt_k4    B stored [N,K] (transB) and A stored [M,K], K % 4 == 0: four k per iteration, A rows and
//                 B columns as vec4 along k (1.8× main on lavapipe for the backward dX = dY·Wᵀ).

#include "lib/matmul-io.wgsl"   // Params (p.wx: columns × WG/p.wx rows), bindings 0..4, epilogue

@group(0) @binding(5) var<storage, read> b4: array<vec4f>;   // B viewed as vec4 (instead of binding 2)
@group(0) @binding(6) var<storage, read> a4: array<vec4f>;   // A viewed as vec4 (instead of binding 1)

// Invocations per workgroup. How they split into columns × rows (p.wx × WG/p.wx) is a uniform, so one
// pipeline serves wide and skinny outputs alike (a pipeline costs seconds to compile on lavapipe).
override WG: u32 = 64;

struct AOff { o0: u32, o1: u32, o2: u32, o3: u32, o4: u32, o5: u32, o6: u32, o7: u32 }
struct AV { v0: vec4f, v1: vec4f, v2: vec4f, v3: vec4f, v4: vec4f, v5: vec4f, v6: vec4f, v7: vec4f }
struct S8 { s0: f32, s1: f32, s2: f32, s3: f32, s4: f32, s5: f32, s6: f32, s7: f32 }
struct B16 {
  c0: vec4f, c1: vec4f, c2: vec4f, c3: vec4f, c4: vec4f, c5: vec4f, c6: vec4f, c7: vec4f,
  c8: vec4f, c9: vec4f, c10: vec4f, c11: vec4f, c12: vec4f, c13: vec4f, c14: vec4f, c15: vec4f,
}
struct Acc { r0: mat4x4f, r1: mat4x4f, r2: mat4x4f, r3: mat4x4f, r4: mat4x4f, r5: mat4x4f, r6: mat4x4f, r7: mat4x4f }

// (first row, first column) of this invocation's block. Row blocks fold into z past 65535 workgroups.
fn block_origin(wid: vec3u, lid: vec3u, nwg: vec3u) -> vec2u {
  let rb = wid.y + wid.z * nwg.y;
  let wy = WG / p.wx;
  return vec2u((rb * wy + lid.x / p.wx) * 8u, (wid.x * p.wx + lid.x % p.wx) * 16u);
}

fn a_offsets(row0: u32) -> AOff {
  let last = p.M - 1u;
  return AOff(
    min(row0, last) * p.sam, min(row0 + 1u, last) * p.sam, min(row0 + 2u, last) * p.sam, min(row0 + 3u, last) * p.sam,
    min(row0 + 4u, last) * p.sam, min(row0 + 5u, last) * p.sam, min(row0 + 6u, last) * p.sam, min(row0 + 7u,
      last) * p.sam,
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

// acc += s ⊗ bk for one k, with s the 8 values op(A)[rows, k] (already loaded).
fn fma_s(acc: Acc, s: S8, bk: mat4x4f) -> Acc {
  return Acc(
    acc.r0 + s.s0 * bk, acc.r1 + s.s1 * bk, acc.r2 + s.s2 * bk, acc.r3 + s.s3 * bk,
    acc.r4 + s.s4 * bk, acc.r5 + s.s5 * bk, acc.r6 + s.s6 * bk, acc.r7 + s.s7 * bk,
  );
}

// op(A)[row0 … row0+7, k] for A stored [K,M] with M % 4 == 0 (row0 is a multiple of 8).
fn a_rows_vec4(row0: u32, k: u32) -> S8 {
  let base = k * (p.M / 4u);
  let last = p.M / 4u - 1u;
  let lo = a4[base + min(row0 / 4u, last)];
  let hi = a4[base + min(row0 / 4u + 1u, last)];
  return S8(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
}

// A[rows, k … k+3] for A stored [M,K] with K % 4 == 0 (the offsets are row·K).
fn a_k4(o: AOff, k: u32) -> AV {
  let q = k / 4u;
  return AV(
    a4[o.o0 / 4u + q], a4[o.o1 / 4u + q], a4[o.o2 / 4u + q], a4[o.o3 / 4u + q],
    a4[o.o4 / 4u + q], a4[o.o5 / 4u + q], a4[o.o6 / 4u + q], a4[o.o7 / 4u + q],
  );
}

// B[col, k … k+3] for B stored [N,K] with K % 4 == 0.
fn bt_k4(k: u32, col: u32) -> vec4f {
  return b4[(min(col, p.N - 1u) * p.K + k) / 4u];
}

fn bt_cols_k4(k: u32, c: u32) -> B16 {
  return B16(
    bt_k4(k, c), bt_k4(k, c + 1u), bt_k4(k, c + 2u), bt_k4(k, c + 3u),
    bt_k4(k, c + 4u), bt_k4(k, c + 5u), bt_k4(k, c + 6u), bt_k4(k, c + 7u),
    bt_k4(k, c + 8u), bt_k4(k, c + 9u), bt_k4(k, c + 10u), bt_k4(k, c + 11u),
    bt_k4(k, c + 12u), bt_k4(k, c + 13u), bt_k4(k, c + 14u), bt_k4(k, c + 15u),
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
  return mat4x4f(b4[base + min(c4, last)], b4[base + min(c4 + 1u, last)], b4[base + min(c4 + 2u, last)],
    b4[base + min(c4 + 3u, last)]);
}

// The epilogue is written as loops that rotate the accumulators instead of 128 unrolled stores: each store
// (with its bias and accumulate loads) expands to per-lane code on CPU drivers, and unrolled it made
// lavapipe spend a minute compiling the pipeline.
fn store1(x: f32, row: u32, col: u32) {
  if (col >= p.N) { return; }
  let i = row * p.N + col;
  out[i] = epilogue(x, i, col);
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

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let o = block_origin(wid, lid, nwg);
  let ao = a_offsets(o.x);
  var acc = Acc();
  for (var k = 0u; k < p.K; k++) {
    acc = fma_k(acc, ao, k, b_row(k, o.y));
  }
  store_block(acc, o.x, o.y);
}

@compute @workgroup_size(WG)
fn main_vec4(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let o = block_origin(wid, lid, nwg);
  let ao = a_offsets(o.x);
  var acc = Acc();
  for (var k = 0u; k < p.K; k++) {
    acc = fma_k(acc, ao, k, b_row_vec4(k, o.y));
  }
  store_block(acc, o.x, o.y);
}

@compute @workgroup_size(WG)
fn main_at_vec4(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let o = block_origin(wid, lid, nwg);
  var acc = Acc();
  for (var k = 0u; k < p.K; k++) {
    acc = fma_s(acc, a_rows_vec4(o.x, k), b_row_vec4(k, o.y));
  }
  store_block(acc, o.x, o.y);
}

@compute @workgroup_size(WG)
fn main_bt_k4(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let o = block_origin(wid, lid, nwg);
  let ao = a_offsets(o.x);
  var acc = Acc();
  for (var k = 0u; k < p.K; k += 4u) {
    let x = a_k4(ao, k);
    let c = bt_cols_k4(k, o.y);
    acc = fma_s(acc, S8(x.v0.x, x.v1.x, x.v2.x, x.v3.x, x.v4.x, x.v5.x, x.v6.x, x.v7.x), mat4x4f(
      c.c0.x, c.c1.x, c.c2.x, c.c3.x, c.c4.x, c.c5.x, c.c6.x, c.c7.x, c.c8.x, c.c9.x, c.c10.x, c.c11.x, c.c12.x,
        c.c13.x, c.c14.x, c.c15.x));
    acc = fma_s(acc, S8(x.v0.y, x.v1.y, x.v2.y, x.v3.y, x.v4.y, x.v5.y, x.v6.y, x.v7.y), mat4x4f(
      c.c0.y, c.c1.y, c.c2.y, c.c3.y, c.c4.y, c.c5.y, c.c6.y, c.c7.y, c.c8.y, c.c9.y, c.c10.y, c.c11.y, c.c12.y,
        c.c13.y, c.c14.y, c.c15.y));
    acc = fma_s(acc, S8(x.v0.z, x.v1.z, x.v2.z, x.v3.z, x.v4.z, x.v5.z, x.v6.z, x.v7.z), mat4x4f(
      c.c0.z, c.c1.z, c.c2.z, c.c3.z, c.c4.z, c.c5.z, c.c6.z, c.c7.z, c.c8.z, c.c9.z, c.c10.z, c.c11.z, c.c12.z,
        c.c13.z, c.c14.z, c.c15.z));
    acc = fma_s(acc, S8(x.v0.w, x.v1.w, x.v2.w, x.v3.w, x.v4.w, x.v5.w, x.v6.w, x.v7.w), mat4x4f(
      c.c0.w, c.c1.w, c.c2.w, c.c3.w, c.c4.w, c.c5.w, c.c6.w, c.c7.w, c.c8.w, c.c9.w, c.c10.w, c.c11.w, c.c12.w,
        c.c13.w, c.c14.w, c.c15.w));
  }
  store_block(acc, o.x, o.y);
}
