/** One environment's whole benchmark (matmul sweep, then attention sweep) → an EnvResult. */
import type { Gpu } from '../src/gpu/index.ts';
import { attentionCases, matmulCases, type Budget, type EnvResult } from './cases.ts';
import { adapterLite, oursChosen, oursMatmulImpls } from './ours.ts';
import { timingSource } from './timing.ts';
import { oursAttention } from './ours-attention.ts';
import type { PeerInfo } from './peers.ts';
import { attentionSweep, matmulSweep, type Log, type MatmulImpl, type SweepContext } from './sweep.ts';

export interface BenchOptions {
  env: 'browser' | 'node';
  gpu: Gpu;
  budget: Budget;
  log: Log;
  runtime: string;
  peers: Array<{ impl: MatmulImpl; info: PeerInfo }>;
  /** Run only these parts (default both). */
  parts?: Array<'matmul' | 'attention'>;
  /** Case ids to keep (default all). */
  filter?: (id: string) => boolean;
}

export async function runBench(o: BenchOptions): Promise<EnvResult> {
  const t0 = performance.now();
  const parts = o.parts ?? ['matmul', 'attention'];
  const keep = o.filter ?? (() => true);
  const result: EnvResult = {
    env: o.env,
    adapter: adapterLite(o.gpu),
    runtime: o.runtime,
    ourTimingSource: timingSource(o.gpu),
    peers: Object.fromEntries(o.peers.map((p) => [p.impl.id, p.info])),
    budget: o.budget,
    matmul: [],
    attention: [],
    skipped: [],
    elapsedS: 0,
    errors: [],
  };
  const ctx: SweepContext = {
    env: o.env,
    budget: o.budget,
    log: o.log,
    skipped: result.skipped,
    errors: result.errors,
    chosen: oursChosen(o.gpu),
  };
  if (parts.includes('matmul')) {
    o.log(
      `matmul: ours (register, tiled, ` +
        `naive)${o.peers.map((p) => `, ${p.impl.id} (${p.info.backend})`).join('')}; budget ` +
        `${o.budget.perCaseS} s per implementation per case, ${o.budget.matmulS} s in all`,
    );
    const impls = [...oursMatmulImpls(o.gpu), ...o.peers.map((p) => p.impl)];
    result.matmul = await matmulSweep(
      ctx,
      impls,
      matmulCases().filter((c) => keep(c.id)),
    );
  }
  if (parts.includes('attention')) {
    o.log(`attention forward + backward (ours), budget ${o.budget.attentionS} s`);
    result.attention = await attentionSweep(
      ctx,
      oursAttention(o.gpu),
      attentionCases().filter((c) => keep(c.id)),
    );
  }
  result.elapsedS = (performance.now() - t0) / 1000;
  return result;
}
