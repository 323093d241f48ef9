/**
 * The measuring loop shared by the browser page and the Node runner: for each case, each implementation
 * gets one warm-up run (pipeline compilation, buffer allocation, shader caches) and then timed repeats
 * until the per-case budget or maxRepeats; the median is reported. Sizes whose estimated time (from the
 * implementation's rate on the previous, smaller case) exceeds the budget are skipped and listed.
 */
import {
  computeRatios,
  estimateRate,
  executionOrder,
  fmtS,
  matmulFlopsOf,
  planOrSkip,
  summarize,
  type AttentionCase,
  type AttentionResult,
  type Budget,
  type ImplId,
  type MatmulCase,
  type MatmulResult,
  type Skip,
} from './cases.ts';
import { Rng } from '../src/ops/rng.ts';
import { mib } from './table.ts';

export interface RunTiming {
  /** By the implementation's own timing source. */
  ms: number;
  /** Wall clock around the run including the wait for the GPU, when measured. */
  wallMs?: number;
}

export interface Instance {
  run(): Promise<RunTiming>;
  /** The last run's output, for the agreement check. */
  output?(): Promise<Float32Array>;
  dispose(): void | Promise<void>;
}

export interface MatmulImpl {
  id: ImplId;
  /** Backend it runs on ('webgpu', 'wasm', 'cpu', …) — may be a fallback. */
  backend: string;
  /** How `RunTiming.ms` is measured, in words. */
  source: string;
  create(c: MatmulCase, a: Float32Array, b: Float32Array): Promise<Instance>;
}

export type Log = (line: string) => void;

export function randomOperands(c: MatmulCase, seed: number): { a: Float32Array; b: Float32Array } {
  const rng = new Rng(seed);
  return { a: rng.f32(c.M * c.K), b: rng.f32(c.K * c.N) };
}

/** float64 values of op(A)·op(B) at `count` seeded positions, to check each output against. */
function sampledReference(c: MatmulCase, a: Float32Array, b: Float32Array, count: number): Array<[number, number]> {
  const rng = new Rng(99);
  const out: Array<[number, number]> = [];
  for (let n = 0; n < count; n++) {
    const i = rng.int(c.M);
    const j = rng.int(c.N);
    let acc = 0;
    for (let k = 0; k < c.K; k++)
      acc += a[c.transA ? k * c.M + i : i * c.K + k] * b[c.transB ? j * c.K + k : k * c.N + j];
    out.push([i * c.N + j, acc]);
  }
  return out;
}

function sampledError(out: Float32Array, ref: Array<[number, number]>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (const [idx, want] of ref) {
    const d = Math.abs(out[idx] - want);
    maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
    maxRef = Math.max(maxRef, Math.abs(want));
  }
  return maxDiff / Math.max(maxRef, 1e-30);
}

function maxRelDiff(got: Float32Array, want: Float32Array): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
    maxRef = Math.max(maxRef, Math.abs(want[i]));
  }
  return got.length === want.length ? maxDiff / Math.max(maxRef, 1e-30) : Infinity;
}

const now = () => performance.now();

export interface SweepContext {
  env: 'browser' | 'node';
  budget: Budget;
  log: Log;
  skipped: Skip[];
  errors: string[];
  /** Chooses our variant for a shape (chooseMatmulVariant). */
  chosen(c: MatmulCase): string;
}

export function progressLine(i: number, n: number, text: string): string {
  const w = 20;
  const filled = Math.round((i / n) * w);
  return `[${'#'.repeat(filled)}${'.'.repeat(w - filled)}] ${String(i).padStart(2)}/${n} ${text}`;
}

export async function matmulSweep(
  ctx: SweepContext,
  impls: MatmulImpl[],
  cases: MatmulCase[],
): Promise<MatmulResult[]> {
  const { budget: b, log } = ctx;
  const history = new Map<string, Array<{ flops: number; gflops: number }>>();
  const measuredIn = new Set<string>();
  const results: MatmulResult[] = [];
  const t0 = now();
  const order = executionOrder(cases);
  for (const [ci, c] of order.entries()) {
    const flops = matmulFlopsOf(c);
    const r: MatmulResult = { ...c, flops, impls: {}, ratios: {} };
    try {
      r.chosen = ctx.chosen(c);
    } catch (e) {
      ctx.errors.push(`chooseMatmulVariant ${c.id}: ${(e as Error).message}`);
    }
    results.push(r);
    const { a, b: bm } = randomOperands(c, 1000 + ci);
    let reference: Float32Array | undefined;
    const cells: string[] = [];
    // The sweep budget is checked per case for all implementations together, so a case is either compared
    // in full or not at all; the per-case budget then drops the implementations too slow for this size.
    const secondary = (impl: MatmulImpl) =>
      impl.id.startsWith('ours:') && impl.id !== `ours:${r.chosen}` && measuredIn.has(`${impl.id}/${c.group}`);
    const plans = impls.map((impl) =>
      planOrSkip(flops, estimateRate(history.get(impl.id)), b, Infinity, secondary(impl)),
    );
    const caseNeedS = plans.reduce(
      (n, p) => n + (p.skip || p.estS === undefined ? 0 : p.estS * (b.warmup + b.minRepeats)),
      0,
    );
    const leftS = b.matmulS - (now() - t0) / 1000;
    const sweepSkip =
      caseNeedS > 0 && caseNeedS > leftS
        ? `est. ${fmtS(caseNeedS)} for this case > ${fmtS(Math.max(0, leftS))} left of the ${b.matmulS} s sweep budget`
        : undefined;
    if (sweepSkip) ctx.skipped.push({ env: ctx.env, case: c.id, impl: 'all', reason: sweepSkip });
    // Create and warm up every implementation that fits, then time them in interleaved rounds (rotating
    // the order each round) so that load from other processes hits all of them alike.
    let live: Array<{
      impl: MatmulImpl;
      inst: Instance;
      ms: number[];
      wall: number[];
      out?: Float32Array;
      failed?: boolean;
    }> = [];
    const fail = (impl: MatmulImpl, e: unknown) => {
      const why = e instanceof Error ? e.message : String(e);
      ctx.errors.push(`${impl.id} on ${c.id}: ${why}`);
      ctx.skipped.push({ env: ctx.env, case: c.id, impl: implLabel(impl), reason: `failed: ${why}` });
    };
    for (const [ii, impl] of impls.entries()) {
      if (sweepSkip) continue;
      const reason = plans[ii].skip;
      if (reason) {
        ctx.skipped.push({ env: ctx.env, case: c.id, impl: implLabel(impl), reason });
        continue;
      }
      let inst: Instance | undefined;
      try {
        inst = await impl.create(c, a, bm);
        for (let w = 0; w < b.warmup; w++) await inst.run();
        const out = inst.output ? await inst.output() : undefined;
        live.push({ impl, inst, ms: [], wall: [], out });
      } catch (e) {
        fail(impl, e);
        await inst?.dispose();
      }
    }
    const roundsStart = now();
    for (let round = 0; live.length && round < b.maxRepeats; round++) {
      const elapsed = now() - roundsStart;
      // Stop once another round would overrun repeatS per implementation (after minRepeats rounds).
      if (round >= b.minRepeats && elapsed * (1 + 1 / round) > b.repeatS * 1000 * live.length) break;
      for (let k = 0; k < live.length; k++) {
        const e = live[(k + round) % live.length];
        try {
          const t = await e.inst.run();
          e.ms.push(t.ms);
          if (t.wallMs !== undefined) e.wall.push(t.wallMs);
        } catch (err) {
          fail(e.impl, err);
          e.failed = true;
        }
      }
      for (const e of live) if (e.failed) await e.inst.dispose();
      live = live.filter((e) => !e.failed);
    }
    const ref64 = live.some((e) => e.out) ? sampledReference(c, a, bm, 256) : [];
    for (const e of live) {
      const sample = summarize(
        e.ms,
        flops,
        e.impl.source,
        e.impl.backend,
        e.wall.length === e.ms.length ? e.wall : undefined,
      );
      if (e.out) {
        sample.refErr = sampledError(e.out, ref64);
        if (!reference) reference = e.out;
        else sample.relErr = maxRelDiff(e.out, reference);
      }
      r.impls[e.impl.id] = sample;
      history.set(e.impl.id, [...(history.get(e.impl.id) ?? []), { flops, gflops: sample.gflops }]);
      measuredIn.add(`${e.impl.id}/${c.group}`);
      await e.inst.dispose();
    }
    for (const impl of impls) {
      const smp = r.impls[impl.id];
      const failed = ctx.skipped.some(
        (x) => x.case === c.id && x.impl === implLabel(impl) && x.reason.startsWith('failed'),
      );
      cells.push(`${impl.id} ${smp ? smp.gflops.toFixed(2) : sweepSkip ? '' : failed ? 'FAILED' : 'skipped'}`);
    }
    // 'ours' is the variant the selector picks; it was measured as that variant.
    const chosenSample = r.chosen ? r.impls[`ours:${r.chosen}` as ImplId] : undefined;
    if (chosenSample) r.impls.ours = chosenSample;
    computeRatios(r);
    const ratio = r.ratios.bestPeer !== undefined ? `  ours/best peer ${r.ratios.bestPeer.toFixed(2)}×` : '';
    log(
      progressLine(
        ci + 1,
        order.length,
        `${c.id} (${(flops / 1e9).toFixed(2)} GFLOP, ${fmtS((now() - t0) / 1000)}): ` +
          `${sweepSkip ? `skipped (${sweepSkip})` : `${cells.join(', ')} GFLOP/s${ratio}`}`,
      ),
    );
  }
  return results;
}

export function implLabel(impl: MatmulImpl): string {
  return impl.backend === 'webgpu' || impl.id.startsWith('ours') ? impl.id : `${impl.id} (${impl.backend})`;
}

export interface AttentionRunner {
  /** Allocates inputs for the case; returns runners for forward and backward. */
  create(c: AttentionCase): Promise<{
    fwd(): Promise<RunTiming>;
    bwd(): Promise<RunTiming>;
    /** Runs forward + backward once, measuring the pool: largest buffer and peak live bytes above the inputs. */
    memory(): Promise<{ largestBuffer: number; peakExtraBytes: number }>;
    dispose(): void;
  }>;
  flops(c: AttentionCase, backward: boolean): number;
  source: string;
}

export async function attentionSweep(
  ctx: SweepContext,
  runner: AttentionRunner,
  cases: AttentionCase[],
): Promise<AttentionResult[]> {
  const { budget: b, log } = ctx;
  let t0 = now();
  let rate: number | undefined;
  const results: AttentionResult[] = [];
  for (const [ci, c] of cases.entries()) {
    const fwdFlops = runner.flops(c, false);
    const bwdFlops = runner.flops(c, true);
    const r: AttentionResult = { ...c, fwdFlops, bwdFlops, scoreMatrixBytes: c.batch * c.heads * c.seq * c.seq * 4 };
    results.push(r);
    const left = b.attentionS - (now() - t0) / 1000;
    const plan = planOrSkip(fwdFlops + bwdFlops, rate, b, left);
    // Too slow to time properly: one run still shows how memory grows, if it fits.
    const memoryOnly =
      plan.skip !== undefined && plan.estS !== undefined && plan.estS <= b.memoryOnlyS && plan.estS <= left;
    if ((plan.skip && !memoryOnly) || left <= 0) {
      r.skipped = plan.skip ?? 'sweep budget used up';
      ctx.skipped.push({ env: ctx.env, case: c.id, impl: 'ours attention fwd+bwd', reason: r.skipped });
      log(progressLine(ci + 1, cases.length, `attention T=${c.seq}: skipped (${r.skipped})`));
      continue;
    }
    let inst: Awaited<ReturnType<AttentionRunner['create']>> | undefined;
    try {
      inst = await runner.create(c);
      // The warm-up run doubles as the memory measurement.
      const start = now();
      const mem = await inst.memory();
      r.largestBuffer = mem.largestBuffer;
      r.peakExtraBytes = mem.peakExtraBytes;
      const warmMs = now() - start;
      // The first run compiles the pipelines (minutes for a cold shader cache on CPU drivers): not counted.
      if (ci === 0) {
        t0 += warmMs;
        log(
          `attention: first run (pipeline compilation included) ${fmtS(warmMs / 1000)}, not counted in the ` +
            `sweep budget`,
        );
      }
      if (memoryOnly) {
        r.memoryOnlyMs = warmMs;
        r.skipped = `timing: ${plan.skip}; one memory-measuring run instead (${fmtS(warmMs / 1000)} wall, cold)`;
        ctx.skipped.push({ env: ctx.env, case: c.id, impl: 'ours attention fwd+bwd (timing only)', reason: r.skipped });
        log(
          progressLine(
            ci + 1,
            cases.length,
            `attention T=${c.seq}: memory only (${fmtS(warmMs / 1000)}), largest buffer ` +
              `${mib(r.largestBuffer)}, peak extra ${mib(r.peakExtraBytes)} (T×T scores would be ` +
              `${mib(r.scoreMatrixBytes)})`,
          ),
        );
        continue;
      }
      const fwd: number[] = [];
      const bwd: number[] = [];
      const tot: number[] = [];
      const rep0 = now();
      while (fwd.length < b.maxRepeats) {
        const elapsed = now() - rep0;
        const per = fwd.length ? elapsed / fwd.length : warmMs;
        if (fwd.length >= b.minRepeats && elapsed + per > b.repeatS * 1000) break;
        const f = await inst.fwd();
        const g = await inst.bwd();
        fwd.push(f.ms);
        bwd.push(g.ms);
        tot.push(f.ms + g.ms);
      }
      r.fwd = summarize(fwd, fwdFlops, runner.source, 'webgpu');
      r.bwd = summarize(bwd, bwdFlops, runner.source, 'webgpu');
      r.total = summarize(tot, fwdFlops + bwdFlops, runner.source, 'webgpu');
      rate = r.total.gflops;
      log(
        progressLine(
          ci + 1,
          cases.length,
          `attention T=${c.seq} (${fmtS((now() - t0) / 1000)}): fwd ${r.fwd.ms.toFixed(1)} ms, bwd ` +
            `${r.bwd.ms.toFixed(1)} ms, ${r.total.gflops.toFixed(2)} GFLOP/s, largest buffer ` +
            `${mib(r.largestBuffer)}, peak extra ${mib(r.peakExtraBytes)} (T×T scores would be ` +
            `${mib(r.scoreMatrixBytes)})`,
        ),
      );
    } catch (e) {
      r.skipped = `failed: ${(e as Error).message ?? e}`;
      ctx.errors.push(`attention T=${c.seq}: ${(e as Error).message ?? e}`);
      ctx.skipped.push({ env: ctx.env, case: c.id, impl: 'ours attention fwd+bwd', reason: r.skipped });
      log(progressLine(ci + 1, cases.length, `attention T=${c.seq}: FAILED ${(e as Error).message ?? e}`));
    } finally {
      inst?.dispose();
    }
  }
  return results;
}
