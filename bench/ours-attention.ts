/** Our attention forward + backward as a benchmark runner, with the buffer pool's memory statistics. */
import type { Gpu, Tensor } from '../src/gpu/index.ts';
import { attention, attentionBackward, attentionFlops } from '../src/ops/attention.ts';
import { Rng } from '../src/ops/rng.ts';
import type { AttentionCase } from './cases.ts';
import { timed, timingSource } from './timing.ts';
import type { AttentionRunner } from './sweep.ts';

export function oursAttention(gpu: Gpu): AttentionRunner {
  return {
    source: timingSource(gpu),
    flops: (c: AttentionCase, backward: boolean) =>
      attentionFlops({ batch: c.batch, seq: c.seq, heads: c.heads, channels: c.channels }, backward),
    async create(c: AttentionCase) {
      const dims = { batch: c.batch, seq: c.seq, heads: c.heads };
      const rows = c.batch * c.seq;
      const rng = new Rng(77 + c.seq);
      const qkv = gpu.upload(rng.f32(rows * 3 * c.channels), [rows, 3 * c.channels], 'f32', 'bench.qkv');
      const dout = gpu.upload(rng.f32(rows * c.channels), [rows, c.channels], 'f32', 'bench.dout');
      let fwdOut: { out: Tensor; lse: Tensor } | undefined;
      let dqkv: Tensor | undefined;
      const clear = () => {
        if (fwdOut) gpu.release(fwdOut.out, fwdOut.lse);
        gpu.release(dqkv);
        fwdOut = undefined;
        dqkv = undefined;
      };
      return {
        fwd: () => {
          clear();
          return timed(gpu, () => {
            fwdOut = attention(gpu, qkv, dims);
          });
        },
        bwd: () =>
          timed(gpu, () => {
            const f = fwdOut!;
            gpu.release(dqkv);
            dqkv = attentionBackward(gpu, qkv, f.out, dout, f.lse, dims);
          }),
        async memory() {
          clear();
          await gpu.sync();
          const before = gpu.pool.stats.liveBytes;
          gpu.pool.resetPeak();
          const f = attention(gpu, qkv, dims);
          const d = attentionBackward(gpu, qkv, f.out, dout, f.lse, dims);
          await gpu.sync();
          const { largestBuffer, peakLiveBytes } = gpu.pool.stats;
          gpu.release(f.out, f.lse, d);
          return { largestBuffer, peakExtraBytes: peakLiveBytes - before };
        },
        dispose() {
          clear();
          gpu.release(qkv, dout);
          gpu.pool.trim();
        },
      };
    },
  };
}
