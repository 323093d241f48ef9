// Tiled matmul (the GPU kernel): C[M,N] = op(A)·op(B) (+bias) (+C), and the bias gradient (column sums).
//
// A workgroup of (TN/4)×(TM/4) invocations computes a TM×TN tile of C; each invocation owns a 4×4 block in
// four vec4 accumulators. K is walked in TK-deep slabs staged in workgroup memory: As holds op(A)[tile rows,
// slab] as vec4s of 4 consecutive rows, Bs holds op(B)[slab, tile columns] as vec4s of 4 consecutive
// columns, so the inner loop reads one vec4 of each and does 16 multiply-adds. Tile sizes are override
// constants chosen from the device limits by the wrapper (64×64×16 = 8 KiB and 256 invocations by default).
//
// op(A)[m,k] = a[m·sam + k·sak] and op(B)[k,n] = b[k·sbk + n·sbn]: transposes are strides, not copies.
// Staging loads walk whichever index has stride 1, so global reads are coalesced for every transpose.
// FAST (M, N, K multiples of the tile) drops all bounds checks; otherwise out-of-range rows/columns are
// not stored and k past K stages zeros. Deterministic: every output sums k = 0 … K-1 in order.

#include "lib/matmul-io.wgsl"   // Params, bindings 0..4, epilogue

override TM: u32 = 64;
override TN: u32 = 64;
override TK: u32 = 16;
override FAST: bool = false;
override BG_WG: u32 = 64;   // bias_grad workgroup size

override THREADS: u32 = (TM / 4u) * (TN / 4u);

var<workgroup> As: array<vec4f, TK * TM / 4u>;
var<workgroup> Bs: array<vec4f, TK * TN / 4u>;

fn load_a(row: u32, k: u32) -> f32 {
  if (!FAST && (row >= p.M || k >= p.K)) { return 0.0; }
  return a[row * p.sam + k * p.sak];
}

fn load_b(k: u32, col: u32) -> f32 {
  if (!FAST && (col >= p.N || k >= p.K)) { return 0.0; }
  return b[k * p.sbk + col * p.sbn];
}

fn store1(x: f32, row: u32, col: u32) {
  if (!FAST && col >= p.N) { return; }
  let i = row * p.N + col;
  out[i] = epilogue(x, i, col);
}

@compute @workgroup_size(TN / 4u, TM / 4u)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let row0 = (wid.y + wid.z * nwg.y) * TM;   // row blocks fold into z past 65535 workgroups
  let col0 = wid.x * TN;
  if (row0 >= p.M) { return; }   // a padding block of a folded grid (uniform per workgroup)
  let tid = lid.y * (TN / 4u) + lid.x;
  let a_k_fast = p.sak == 1u;
  let b_n_fast = p.sbn == 1u;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    // Stage the slab: each slot is a vec4 of 4 consecutive rows (As) or columns (Bs) at one k.
    for (var i = 0u; i < (TM / 4u) * TK / THREADS; i++) {
      let e = tid + i * THREADS;
      let q = select(e % (TM / 4u), e / TK, a_k_fast);
      let kk = select(e / (TM / 4u), e % TK, a_k_fast);
      let r = row0 + 4u * q;
      let k = k0 + kk;
      As[kk * (TM / 4u) + q] = vec4f(load_a(r, k), load_a(r + 1u, k), load_a(r + 2u, k), load_a(r + 3u, k));
    }
    for (var i = 0u; i < (TN / 4u) * TK / THREADS; i++) {
      let e = tid + i * THREADS;
      let q = select(e / TK, e % (TN / 4u), b_n_fast);
      let kk = select(e % TK, e / (TN / 4u), b_n_fast);
      let c = col0 + 4u * q;
      let k = k0 + kk;
      Bs[kk * (TN / 4u) + q] = vec4f(load_b(k, c), load_b(k, c + 1u), load_b(k, c + 2u), load_b(k, c + 3u));
    }
    workgroupBarrier();
    // A runtime trip count (the slab's valid depth) keeps CPU drivers from unrolling the slab: unrolled, with
    // its workgroup loads expanded per lane, lavapipe took 10–15 s to compile the pipeline. GPU compilers
    // still unroll by a few iterations on their own.
    let kn = min(TK, p.K - k0);
    for (var kk = 0u; kk < kn; kk++) {
      let av = As[kk * (TM / 4u) + lid.y];
      let bv = Bs[kk * (TN / 4u) + lid.x];
      acc0 = fma(vec4f(av.x), bv, acc0);
      acc1 = fma(vec4f(av.y), bv, acc1);
      acc2 = fma(vec4f(av.z), bv, acc2);
      acc3 = fma(vec4f(av.w), bv, acc3);
    }
    workgroupBarrier();
  }
  // Loops that rotate the accumulators keep one copy of the store code (CPU drivers expand every store per
  // lane; unrolled, the epilogue dominates compile time).
  var r = mat4x4f(acc0, acc1, acc2, acc3);
  let rowT = row0 + lid.y * 4u;
  let colT = col0 + lid.x * 4u;
  for (var i = 0u; i < 4u; i++) {
    if (FAST || rowT + i < p.M) {
      var v = r[0];
      for (var j = 0u; j < 4u; j++) {
        store1(v.x, rowT + i, colT + j);
        v = v.yzwx;
      }
    }
    r = mat4x4f(r[1], r[2], r[3], r[0]);
  }
}

// db[n] = Σ_m dy[m,n] (+ the previous db[n] when accumulating): one invocation per column, rows in order.
@compute @workgroup_size(BG_WG)
fn bias_grad(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let n = (wid.x + wid.y * nwg.x) * BG_WG + lid.x;
  if (n >= p.N) { return; }
  var s = 0.0;
  for (var m = 0u; m < p.M; m++) {
    s += a[m * p.N + n];
  }
  if ((p.flags & 2u) != 0u) { s += out[n]; }
  out[n] = s;
}
