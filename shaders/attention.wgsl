// Read shaders/attention-naive.wgsl first: the same function, one query row per invocation, in a page.
//
// Causal multi-head attention, FlashAttention-2 style: no T×T matrix ever exists; each query row keeps a
// running max m and sum l of exp(s − m) (online softmax) and its output accumulator in registers, and only
// the row's log-sum-exp goes to memory for the backward pass, which recomputes P = exp(S − lse).
//
// Layout, uniforms and bindings: lib/attention-io.wgsl.
//
// One workgroup owns BR = WG·RPI consecutive rows of one (b, h): query rows for forward / dQ / delta, key
// rows for dK/dV; invocation i owns rows r0 + i·RPI .. r0 + i·RPI + RPI − 1. Several rows per invocation
// (register blocking) let each loaded key (or query) serve RPI rows: CPU drivers load every element lane by
// lane, so loads, not FLOPs, are their cost. Keys (forward, dQ) or queries (dK/dV) are visited in blocks
// of KB rows:
//   TILED = true:  the workgroup stages each block in workgroup memory, then every invocation reads it
//                  from there (KB sized at run time from maxComputeWorkgroupStorageSize).
//   TILED = false: no workgroup memory and no barriers; invocations read the block from the storage buffer.
// With TILED the block's own rows also come in (q, k and v, dO) and go out (O, dQ, dK and dV) through the
// tiles, KB rows at a time: coalesced on GPUs, and on CPU drivers (which expand every per-invocation memory
// access lane by lane) it keeps the unrolled code, and so the compile time, down.
// Loop bounds are workgroup-uniform (barriers need it); the causal mask is applied per row with select, so
// a row computes at most BR − 1 masked scores. dQ and dK/dV write disjoint column ranges of dqkv: no
// atomics, fixed summation order, bit-identical reruns.
// Loops that index private arrays have constant trip counts (RPI, D4 are overrides) so compilers can unroll
// them and keep the arrays in registers.

#include "lib/attention-io.wgsl"

override WG: u32 = 64;        // invocations per workgroup
override RPI: u32 = 1;        // rows per invocation; RPI·ceil(D/4) ≤ REGS4, RPI ≤ MAXR
override KB: u32 = 32;        // keys (queries for dK/dV) per block
override TILED: bool = true;
override BR: u32 = WG * RPI;
override TILE4: u32 = select(1u, KB * D4, TILED);
override TILES: u32 = select(1u, KB, TILED);

const REGS4: u32 = 32u;       // vec4 registers per row-blocked array: RPI·ceil(D/4) ≤ 32 bounds the unrolled code
const MAXR: u32 = 8u;

var<workgroup> tileA: array<vec4f, TILE4>;   // K (forward, dQ) or Q (dK/dV)
var<workgroup> tileB: array<vec4f, TILE4>;   // V (forward, dQ) or dO (dK/dV)
var<workgroup> tileL: array<f32, TILES>;     // lse (dK/dV)
var<workgroup> tileE: array<f32, TILES>;     // delta (dK/dV)

// Row-blocked registers: element [k·D4 + d4] belongs to own row k.
var<private> ra: array<vec4f, REGS4>;        // q·scale (forward, dQ) or k·scale (dK/dV)
var<private> rb: array<vec4f, REGS4>;        // dO (dQ) or v (dK/dV)
var<private> acc: array<vec4f, REGS4>;       // O (forward), dQ, or dK
var<private> acc2: array<vec4f, REGS4>;      // dV
// One key (forward, dQ) or query (dK/dV) row, loaded once and used by all RPI own rows.
var<private> xa: array<vec4f, MAXD4>;
var<private> xb: array<vec4f, MAXD4>;
var<private> mrow: array<f32, MAXR>;         // running max (forward); lse (backward)
var<private> lrow: array<f32, MAXR>;         // running sum (forward); delta (backward)

// The workgroup's block. Every field is workgroup-uniform: the uniformity analysis needs them apart from
// the per-invocation rows.
struct Block {
  valid: bool,  // false when the grid was folded past the last block
  bh: u32,      // b·H + h
  seq0: u32,    // row of token 0 of this sequence in qkv / out
  hoff: u32,    // h·D: column of this head inside the q (and, + C / + 2C, the k / v) part
  r0: u32,      // first row (token) of the block
}

fn block(wid: vec3u, nwg: vec3u) -> Block {
  let flat = wid.x + wid.y * nwg.x;
  var w: Block;
  w.valid = flat < p.nbh * p.nblk;
  w.bh = flat / p.nblk;
  w.seq0 = (w.bh / p.H) * p.T;
  w.hoff = (w.bh % p.H) * DH;
  w.r0 = (flat % p.nblk) * BR;
  return w;
}

fn qkv_row(w: Block, t: u32, part: u32) -> u32 {
  return (w.seq0 + t) * 3u * p.C + part * p.C + w.hoff;
}

fn dout_row(w: Block, t: u32) -> u32 {
  return (w.seq0 + t) * p.C + w.hoff;
}

// Row t0 + c of the current key (forward, dQ) or query (dK/dV) block into xa / xb, from the tile or from
// memory. Rows past T (padding of the last block) are clamped to T − 1: finite values whose scores the
// causal mask discards.
fn load_k(w: Block, t0: u32, c: u32) {
  if (TILED) {
    for (var d4 = 0u; d4 < D4; d4++) { xa[d4] = tileA[c * D4 + d4]; }
  } else {
    let kb = qkv_row(w, min(t0 + c, p.T - 1u), 1u);
    for (var d4 = 0u; d4 < D4; d4++) { xa[d4] = ld_qkv(kb, d4); }
  }
}

fn load_v(w: Block, t0: u32, c: u32) {
  if (TILED) {
    for (var d4 = 0u; d4 < D4; d4++) { xb[d4] = tileB[c * D4 + d4]; }
  } else {
    let vb = qkv_row(w, min(t0 + c, p.T - 1u), 2u);
    for (var d4 = 0u; d4 < D4; d4++) { xb[d4] = ld_qkv(vb, d4); }
  }
}

fn load_q_do(w: Block, t0: u32, c: u32) {
  if (TILED) {
    for (var d4 = 0u; d4 < D4; d4++) {
      xa[d4] = tileA[c * D4 + d4];
      xb[d4] = tileB[c * D4 + d4];
    }
  } else {
    let t = min(t0 + c, p.T - 1u);
    let qb = qkv_row(w, t, 0u);
    let ob = dout_row(w, t);
    for (var d4 = 0u; d4 < D4; d4++) {
      xa[d4] = ld_qkv(qb, d4);
      xb[d4] = ld_dout(ob, d4);
    }
  }
}

// Staging: rows t0 .. t0 + n − 1 (n ≤ KB) of the block into the tiles. Callers keep it in workgroup-uniform
// control flow (barriers). The loops are dynamic on purpose: only the vec4 reads of the tiles are unrolled.
fn stage_q(w: Block, t0: u32, n: u32, lid: u32) {
  workgroupBarrier();
  for (var e = lid; e < n * D4; e += WG) { tileA[e] = ld_qkv(qkv_row(w, t0 + e / D4, 0u), e % D4); }
  workgroupBarrier();
}

fn stage_kv(w: Block, t0: u32, n: u32, lid: u32) {
  workgroupBarrier();
  for (var e = lid; e < n * D4; e += WG) {
    let t = t0 + e / D4;
    tileA[e] = ld_qkv(qkv_row(w, t, 1u), e % D4);
    tileB[e] = ld_qkv(qkv_row(w, t, 2u), e % D4);
  }
  workgroupBarrier();
}

fn stage_q_do(w: Block, t0: u32, n: u32, lid: u32) {
  workgroupBarrier();
  for (var e = lid; e < n * D4; e += WG) {
    let t = t0 + e / D4;
    tileA[e] = ld_qkv(qkv_row(w, t, 0u), e % D4);
    tileB[e] = ld_dout(dout_row(w, t), e % D4);
  }
  for (var c = lid; c < n; c += WG) {
    tileL[c] = lse_in[w.bh * p.T + t0 + c];
    tileE[c] = delta_in[w.bh * p.T + t0 + c];
  }
  workgroupBarrier();
}

// Writes rows t0 .. t0 + n − 1 staged in tileA (tileB) to out or to part `part` of dqkv.
fn flush_a_out(w: Block, t0: u32, n: u32, lid: u32) {
  workgroupBarrier();
  for (var e = lid; e < n * D4; e += WG) { st_out(dout_row(w, t0 + e / D4), e % D4, tileA[e]); }
}

fn flush_a_dqkv(w: Block, t0: u32, n: u32, lid: u32, part: u32) {
  workgroupBarrier();
  for (var e = lid; e < n * D4; e += WG) { st_dqkv(qkv_row(w, t0 + e / D4, part), e % D4, tileA[e]); }
}

fn flush_b_dqkv(w: Block, t0: u32, n: u32, lid: u32, part: u32) {
  for (var e = lid; e < n * D4; e += WG) { st_dqkv(qkv_row(w, t0 + e / D4, part), e % D4, tileB[e]); }
}

// Own rows r = rl + k lie in the staged chunk t0 .. t0 + n − 1 for some k only.
fn in_chunk(r: u32, t0: u32, n: u32) -> bool {
  return r >= t0 && r < t0 + n;
}

@compute @workgroup_size(WG)
fn forward(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let w = block(wid, nwg);
  if (!w.valid) { return; }
  let rl = w.r0 + lid.x * RPI;
  let rend = min(p.T, w.r0 + BR);   // rows of the block that exist
  for (var k = 0u; k < RPI; k++) {
    mrow[k] = NEG;
    lrow[k] = 0.0;
    for (var d4 = 0u; d4 < D4; d4++) { acc[k * D4 + d4] = vec4f(0.0); }
  }
  if (TILED) {
    // Own rows leave the tile one at a time in a loop of runtime length p.rpi, and are blended into the
    // register arrays, whose indices must stay constant: the unrolled code holds one copy of the tile reads
    // instead of RPI (CPU drivers expand each read lane by lane; this halves their compile time).
    for (var t0 = w.r0; t0 < rend; t0 += KB) {
      let n = min(KB, rend - t0);
      stage_q(w, t0, n, lid.x);
      for (var k = 0u; k < p.rpi; k++) {
        if (in_chunk(rl + k, t0, n)) {
          load_k(w, t0, rl + k - t0);
          for (var j = 0u; j < RPI; j++) {
            if (j == k) { for (var d4 = 0u; d4 < D4; d4++) { ra[j * D4 + d4] = xa[d4] * p.scale; } }
          }
        }
      }
    }
  } else {
    for (var k = 0u; k < RPI; k++) {
      let qb = qkv_row(w, min(rl + k, p.T - 1u), 0u);
      for (var d4 = 0u; d4 < D4; d4++) { ra[k * D4 + d4] = ld_qkv(qb, d4) * p.scale; }
    }
  }
  // The block's last row sees keys 0 .. rend − 1.
  for (var k0 = 0u; k0 < rend; k0 += KB) {
    let n = min(KB, rend - k0);
    if (TILED) { stage_kv(w, k0, n, lid.x); }
    for (var c = 0u; c < n; c++) {
      load_k(w, k0, c);
      load_v(w, k0, c);
      for (var k = 0u; k < RPI; k++) {
        var dot4 = vec4f(0.0);
        for (var d4 = 0u; d4 < D4; d4++) { dot4 += ra[k * D4 + d4] * xa[d4]; }
        // Key 0 comes first for every row, so m is a real score from then on and masked keys get p = 0.
        let s = select(hsum(dot4), NEG, k0 + c > rl + k);
        let m = max(mrow[k], s);
        let corr = exp(mrow[k] - m);
        let pc = exp(s - m);
        lrow[k] = lrow[k] * corr + pc;
        mrow[k] = m;
        for (var d4 = 0u; d4 < D4; d4++) { acc[k * D4 + d4] = acc[k * D4 + d4] * corr + pc * xb[d4]; }
      }
    }
  }
  for (var k = 0u; k < RPI; k++) {
    let inv = 1.0 / lrow[k];
    for (var d4 = 0u; d4 < D4; d4++) { acc[k * D4 + d4] *= inv; }
    if (rl + k < p.T) { lse[w.bh * p.T + rl + k] = mrow[k] + log(lrow[k]); }
  }
  if (TILED) {
    for (var t0 = w.r0; t0 < rend; t0 += KB) {
      let n = min(KB, rend - t0);
      workgroupBarrier();
      for (var k = 0u; k < p.rpi; k++) {
        if (in_chunk(rl + k, t0, n)) {
          for (var j = 0u; j < RPI; j++) {
            if (j == k) { for (var d4 = 0u; d4 < D4; d4++) { xa[d4] = acc[j * D4 + d4]; } }
          }
          for (var d4 = 0u; d4 < D4; d4++) { tileA[(rl + k - t0) * D4 + d4] = xa[d4]; }
        }
      }
      flush_a_out(w, t0, n, lid.x);
    }
  } else {
    for (var k = 0u; k < RPI; k++) {
      if (rl + k < p.T) {
        for (var d4 = 0u; d4 < D4; d4++) { st_out(dout_row(w, rl + k), d4, acc[k * D4 + d4]); }
      }
    }
  }
}

// delta_i = rowsum(dO_i ∘ O_i) = Σ_j P_ij·dP_ij, the term the softmax backward subtracts. One row per
// invocation (RPI is ignored; the wrapper dispatches this kernel over rows of WG).
@compute @workgroup_size(WG)
fn backward_delta(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let i = (wid.x + wid.y * nwg.x) * WG + lid.x;   // (b·H + h)·T + t
  if (i >= p.nbh * p.T) { return; }
  let bh = i / p.T;
  let ob = ((bh / p.H) * p.T + i % p.T) * p.C + (bh % p.H) * DH;
  var s = 0.0;
  for (var d = 0u; d < DH; d++) { s += dout[ob + d] * o_in[ob + d]; }
  delta[i] = s;
}

// dQ_i = scale · Σ_{j ≤ i} P_ij (dP_ij − delta_i) k_j with P_ij = exp(scale·q_i·k_j − lse_i), dP_ij = dO_i·v_j.
@compute @workgroup_size(WG)
fn backward_dq(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let w = block(wid, nwg);
  if (!w.valid) { return; }
  let rl = w.r0 + lid.x * RPI;
  let rend = min(p.T, w.r0 + BR);
  for (var k = 0u; k < RPI; k++) {
    for (var d4 = 0u; d4 < D4; d4++) { acc[k * D4 + d4] = vec4f(0.0); }
  }
  if (TILED) {
    for (var t0 = w.r0; t0 < rend; t0 += KB) {
      let n = min(KB, rend - t0);
      stage_q_do(w, t0, n, lid.x);
      for (var k = 0u; k < p.rpi; k++) {
        if (in_chunk(rl + k, t0, n)) {
          let c = rl + k - t0;
          load_q_do(w, t0, c);
          let li = tileL[c];
          let di = tileE[c];
          for (var j = 0u; j < RPI; j++) {
            if (j == k) {
              for (var d4 = 0u; d4 < D4; d4++) {
                ra[j * D4 + d4] = xa[d4] * p.scale;
                rb[j * D4 + d4] = xb[d4];
              }
              mrow[j] = li;
              lrow[j] = di;
            }
          }
        }
      }
    }
  } else {
    for (var k = 0u; k < RPI; k++) {
      let rc = min(rl + k, p.T - 1u);
      let qb = qkv_row(w, rc, 0u);
      let ob = dout_row(w, rc);
      for (var d4 = 0u; d4 < D4; d4++) {
        ra[k * D4 + d4] = ld_qkv(qb, d4) * p.scale;
        rb[k * D4 + d4] = ld_dout(ob, d4);
      }
      mrow[k] = lse_in[w.bh * p.T + rc];
      lrow[k] = delta_in[w.bh * p.T + rc];
    }
  }
  for (var k0 = 0u; k0 < rend; k0 += KB) {
    let n = min(KB, rend - k0);
    if (TILED) { stage_kv(w, k0, n, lid.x); }
    for (var c = 0u; c < n; c++) {
      load_k(w, k0, c);
      load_v(w, k0, c);
      for (var k = 0u; k < RPI; k++) {
        var s4 = vec4f(0.0);
        var dp4 = vec4f(0.0);
        for (var d4 = 0u; d4 < D4; d4++) {
          s4 += ra[k * D4 + d4] * xa[d4];
          dp4 += rb[k * D4 + d4] * xb[d4];
        }
        let pc = select(exp(hsum(s4) - mrow[k]), 0.0, k0 + c > rl + k);
        let ds = pc * (hsum(dp4) - lrow[k]);
        for (var d4 = 0u; d4 < D4; d4++) { acc[k * D4 + d4] += ds * xa[d4]; }
      }
    }
  }
  if (TILED) {
    for (var t0 = w.r0; t0 < rend; t0 += KB) {
      let n = min(KB, rend - t0);
      workgroupBarrier();
      for (var k = 0u; k < p.rpi; k++) {
        if (in_chunk(rl + k, t0, n)) {
          for (var j = 0u; j < RPI; j++) {
            if (j == k) { for (var d4 = 0u; d4 < D4; d4++) { xa[d4] = acc[j * D4 + d4]; } }
          }
          for (var d4 = 0u; d4 < D4; d4++) { tileA[(rl + k - t0) * D4 + d4] = xa[d4] * p.scale; }
        }
      }
      flush_a_dqkv(w, t0, n, lid.x, 0u);
    }
  } else {
    for (var k = 0u; k < RPI; k++) {
      if (rl + k < p.T) {
        for (var d4 = 0u; d4 < D4; d4++) { st_dqkv(qkv_row(w, rl + k, 0u), d4, acc[k * D4 + d4] * p.scale); }
      }
    }
  }
}

// Per key row j, over queries i ≥ j: dV_j = Σ_i P_ij dO_i, dK_j = scale · Σ_i P_ij (dP_ij − delta_i) q_i.
@compute @workgroup_size(WG)
fn backward_dkv(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u
) {
  let w = block(wid, nwg);
  if (!w.valid) { return; }
  let rl = w.r0 + lid.x * RPI;
  let rend = min(p.T, w.r0 + BR);
  for (var k = 0u; k < RPI; k++) {
    for (var d4 = 0u; d4 < D4; d4++) {
      acc[k * D4 + d4] = vec4f(0.0);
      acc2[k * D4 + d4] = vec4f(0.0);
    }
  }
  if (TILED) {
    for (var t0 = w.r0; t0 < rend; t0 += KB) {
      let n = min(KB, rend - t0);
      stage_kv(w, t0, n, lid.x);
      for (var k = 0u; k < p.rpi; k++) {
        if (in_chunk(rl + k, t0, n)) {
          load_k(w, t0, rl + k - t0);
          load_v(w, t0, rl + k - t0);
          for (var j = 0u; j < RPI; j++) {
            if (j == k) {
              for (var d4 = 0u; d4 < D4; d4++) {
                ra[j * D4 + d4] = xa[d4] * p.scale;
                rb[j * D4 + d4] = xb[d4];
              }
            }
          }
        }
      }
    }
  } else {
    for (var k = 0u; k < RPI; k++) {
      let rc = min(rl + k, p.T - 1u);
      let kb = qkv_row(w, rc, 1u);
      let vb = qkv_row(w, rc, 2u);
      for (var d4 = 0u; d4 < D4; d4++) {
        ra[k * D4 + d4] = ld_qkv(kb, d4) * p.scale;
        rb[k * D4 + d4] = ld_qkv(vb, d4);
      }
    }
  }
  // The block's first key, r0, is seen by queries r0 .. T − 1.
  for (var q0 = w.r0; q0 < p.T; q0 += KB) {
    let n = min(KB, p.T - q0);
    if (TILED) { stage_q_do(w, q0, n, lid.x); }
    for (var c = 0u; c < n; c++) {
      load_q_do(w, q0, c);
      var li: f32;
      var di: f32;
      if (TILED) {
        li = tileL[c];
        di = tileE[c];
      } else {
        li = lse_in[w.bh * p.T + q0 + c];
        di = delta_in[w.bh * p.T + q0 + c];
      }
      for (var k = 0u; k < RPI; k++) {
        var s4 = vec4f(0.0);
        var dp4 = vec4f(0.0);
        for (var d4 = 0u; d4 < D4; d4++) {
          s4 += ra[k * D4 + d4] * xa[d4];
          dp4 += rb[k * D4 + d4] * xb[d4];
        }
        let pc = select(exp(hsum(s4) - li), 0.0, q0 + c < rl + k);
        let ds = pc * (hsum(dp4) - di);
        for (var d4 = 0u; d4 < D4; d4++) {
          acc2[k * D4 + d4] += pc * xb[d4];
          acc[k * D4 + d4] += ds * xa[d4];
        }
      }
    }
  }
  if (TILED) {
    for (var t0 = w.r0; t0 < rend; t0 += KB) {
      let n = min(KB, rend - t0);
      workgroupBarrier();
      for (var k = 0u; k < p.rpi; k++) {
        if (in_chunk(rl + k, t0, n)) {
          for (var j = 0u; j < RPI; j++) {
            if (j == k) {
              for (var d4 = 0u; d4 < D4; d4++) {
                xa[d4] = acc[j * D4 + d4];
                xb[d4] = acc2[j * D4 + d4];
              }
            }
          }
          for (var d4 = 0u; d4 < D4; d4++) {
            tileA[(rl + k - t0) * D4 + d4] = xa[d4] * p.scale;
            tileB[(rl + k - t0) * D4 + d4] = xb[d4];
          }
        }
      }
      flush_a_dqkv(w, t0, n, lid.x, 1u);
      flush_b_dqkv(w, t0, n, lid.x, 2u);
    }
  } else {
    for (var k = 0u; k < RPI; k++) {
      if (rl + k < p.T) {
        for (var d4 = 0u; d4 < D4; d4++) {
          st_dqkv(qkv_row(w, rl + k, 1u), d4, acc[k * D4 + d4] * p.scale);
          st_dqkv(qkv_row(w, rl + k, 2u), d4, acc2[k * D4 + d4]);
        }
      }
    }
  }
}
