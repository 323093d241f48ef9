// What the three matmul kernels share (matmul.wgsl, matmul-register.wgsl, matmul-naive.wgsl): one uniform
// layout and bindings 0..4, so src/ops/matmul.ts fills them the same way for every variant, and the epilogue.
//
// op(A)[m,k] = a[m·sam + k·sak] and op(B)[k,n] = b[k·sbk + n·sbn]: transposes are strides, not copies.

struct Params {
  M: u32, N: u32, K: u32,
  sam: u32, sak: u32,
  sbk: u32, sbn: u32,
  flags: u32,   // bit 0: add bias[n]; bit 1: add the previous out[m,n] (accumulate)
  wx: u32,      // (register kernel) invocations of a workgroup along columns (a power of two dividing WG)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;      // bias_grad: dy
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;   // bound to A when there is no bias
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// x with bias[col] and the previous out[i] added as p.flags asks: the value to store at out[i].
fn epilogue(x: f32, i: u32, col: u32) -> f32 {
  var v = x;
  if ((p.flags & 1u) != 0u) { v += bias[col]; }
  if ((p.flags & 2u) != 0u) { v += out[i]; }
  return v;
}
