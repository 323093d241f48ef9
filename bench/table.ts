/** The kernel benchmark's report (bench/results/kernels.md, which the README includes) and the benches' shared bits. */
import { spawnSync } from 'node:child_process';
import { table } from '../src/cli/table.ts';
import { matmulCases, type AttentionResult, type EnvResult, type MatmulResult, type Sample } from './cases.ts';

/** The checked-out commit (short hash) the report speaks for, or undefined outside a git checkout. */
export function gitCommit(cwd?: string): string | undefined {
  return spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).stdout?.trim() || undefined;
}

export interface ReportMeta {
  date: string;
  commit?: string;
  host?: string;
  versions?: Record<string, string>;
}

const g = (x?: number) =>
  x === undefined ? '–' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3);
const ratio = (x?: number) => (x === undefined ? '–' : `${x.toFixed(2)}×`);

function cell(s: Sample | undefined, skipped: boolean, wall = false): string {
  if (!s) return skipped ? 'skip' : '–';
  const v = wall ? (s.wallGflops ?? s.gflops) : s.gflops;
  const bad = (s.relErr ?? 0) > 1e-3 || (s.refErr ?? 0) > 1e-3 ? ' ✗' : '';
  return `${g(v)}${bad}`;
}

export function mib(bytes?: number): string {
  if (bytes === undefined) return '–';
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function adapterName(e: EnvResult): string {
  const a = e.adapter;
  const name = a.description || a.device || a.architecture || 'unknown';
  return `${a.vendor || 'unknown vendor'} · ${name}${a.isSoftware ? ' (software adapter)' : ''}`;
}

/** How the matmul table's peer columns are clocked. */
const PEER_CLOCKS =
  ' ours/ORT compares wall clock with wall clock ("ours wall": sync, dispatch, wait, timestamp readback), ' +
  'ours/tfjs compares GPU timestamps with tfjs kernelMs.';

function worstErr(e: EnvResult): string {
  let ref = 0;
  let rel = 0;
  for (const r of e.matmul) {
    for (const s of Object.values(r.impls)) {
      ref = Math.max(ref, s?.refErr ?? 0);
      rel = Math.max(rel, s?.relErr ?? 0);
    }
  }
  return `${ref.toExponential(1)} vs float64, ${rel.toExponential(1)} vs ours`;
}

function matmulTable(e: EnvResult): string {
  const peers = Object.entries(e.peers);
  const isSkipped = (r: MatmulResult, impl: string) =>
    e.skipped.some((s) => s.case === r.id && (s.impl === 'all' || s.impl.startsWith(impl)));
  const headers = ['case', 'GFLOP', 'ours', 'variant', 'register', 'tiled', 'naive'];
  for (const [id, p] of peers) headers.push(`${id === 'ort' ? 'ORT' : id} (${p.backend})`);
  if (peers.length) headers.push('ours wall');
  for (const [id] of peers) headers.push(`ours/${id === 'ort' ? 'ORT' : id}`);
  headers.push('ours/naive');
  const order = matmulCases().map((c) => c.id);
  const rows = [...e.matmul]
    .sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id))
    .map((r) => {
      const row = [
        r.label.replace(/\s+/g, ' '),
        (r.flops / 1e9).toFixed(3),
        cell(r.impls.ours, false),
        r.chosen ?? '?',
        cell(r.impls['ours:register'], isSkipped(r, 'ours:register')),
        cell(r.impls['ours:tiled'], isSkipped(r, 'ours:tiled')),
        cell(r.impls['ours:naive'], isSkipped(r, 'ours:naive')),
      ];
      for (const [id] of peers) row.push(cell(r.impls[id as 'ort' | 'tfjs'], isSkipped(r, id)));
      if (peers.length) row.push(cell(r.impls.ours, false, true));
      for (const [id] of peers) row.push(ratio(r.ratios[id as 'ort' | 'tfjs']));
      row.push(ratio(r.ratios.naive));
      return row;
    });
  return table(headers, rows, ['l', 'r', 'r', 'l']);
}

function attentionTable(e: EnvResult): string {
  const headers = [
    'T',
    'fwd ms',
    'bwd ms',
    'fwd GFLOP/s',
    'bwd GFLOP/s',
    'fwd+bwd GFLOP/s',
    'largest buffer',
    'peak extra',
    'peak extra / T',
    'one T×T score matrix',
  ];
  const rows = e.attention.map((r: AttentionResult) => [
    String(r.seq),
    r.fwd ? r.fwd.ms.toFixed(1) : r.memoryOnlyMs !== undefined ? 'mem only' : 'skip',
    r.bwd
      ? r.bwd.ms.toFixed(1)
      : r.memoryOnlyMs !== undefined
        ? `(${(r.memoryOnlyMs / 1000).toFixed(1)} s cold)`
        : 'skip',
    g(r.fwd?.gflops),
    g(r.bwd?.gflops),
    g(r.total?.gflops),
    mib(r.largestBuffer),
    mib(r.peakExtraBytes),
    r.peakExtraBytes === undefined ? '–' : `${(r.peakExtraBytes / r.seq / 1024).toFixed(2)} KiB`,
    mib(r.scoreMatrixBytes),
  ]);
  return table(headers, rows);
}

/** One environment: adapter, methodology, matmul table, attention table, skipped list. */
export function envSection(e: EnvResult): string {
  const out: string[] = [];
  const where = e.env === 'browser' ? 'Headless Chromium' : 'Node (Dawn)';
  out.push(`### ${where} — ${adapterName(e)}`);
  out.push('');
  out.push(`- Runtime: ${e.runtime}`);
  out.push(
    `- Ours: ${e.ourTimingSource}; warm-up ${e.budget.warmup}, then ` +
      `${e.budget.minRepeats}–${e.budget.maxRepeats} timed repeats (as many as fit in ${e.budget.repeatS} s); ` +
      `medians. A size is skipped for an implementation when warm-up + ${e.budget.minRepeats} runs, ` +
      `estimated from its median rate at the largest size it ran so far, would exceed ${e.budget.perCaseS} ` +
      `s (${e.budget.secondaryPerCaseS} s for our variants the selector does not pick, after their first ` +
      `case per group), or the sweep's budget (${e.budget.matmulS} s matmul, ${e.budget.attentionS} s ` +
      `attention) would run out.`,
  );
  for (const [id, p] of Object.entries(e.peers))
    out.push(
      `- ${id === 'ort' ? 'ORT' : id}: ${p.version}, **${p.backend}** backend; ` +
        `${p.timing}${p.note ? ` — ${p.note}` : ''}.`,
    );
  out.push(
    '- Per case, every implementation is created and warmed up, then timed in interleaved rounds (rotating ' +
      'order), so load from other processes falls on all of them alike; inputs are the same seeded uniform(-1, ' +
      '1) matrices for all, and each output is checked against ours.',
  );
  out.push(`- Elapsed ${e.elapsedS.toFixed(0)} s.`);
  if (e.matmul.length) {
    out.push('');
    out.push(
      `Matmul, GFLOP/s (higher is better). "ours" = the variant chooseMatmulVariant picks (column "variant"), ` +
        `by GPU timestamps; ratios > 1 mean ours is ` +
        `faster.${Object.keys(e.peers).length ? PEER_CLOCKS : ''} "skip" = over the time budget (listed below); ` +
        'every output is checked against a float64 reference at 256 positions and against ours ' +
        `(✗ = relative error > 1e-3; worst seen: ${worstErr(e)}).`,
    );
    out.push('');
    out.push(matmulTable(e));
    const tr = e.matmul.filter((r) => r.group === 'transformer' && r.ratios.bestPeer !== undefined);
    if (tr.length) {
      const worst = tr.reduce((a, b) => (a.ratios.bestPeer! <= b.ratios.bestPeer! ? a : b));
      out.push('');
      out.push(
        `Transformer-shaped cases: ours / best peer ranges ` +
          `${Math.min(...tr.map((r) => r.ratios.bestPeer!)).toFixed(2)}× – ` +
          `${Math.max(...tr.map((r) => r.ratios.bestPeer!)).toFixed(2)}× over ${tr.length} measured case(s) ` +
          `(lowest: ${worst.id}).`,
      );
    }
  }
  if (e.attention.length) {
    const a0 = e.attention[0];
    out.push('');
    out.push(
      `Causal attention forward + backward (ours, FlashAttention-2 style), batch ${a0.batch}, ${a0.heads} ` +
        `heads, d_model ${a0.channels}. Memory from the buffer pool during one forward + backward (inputs qkv ` +
        `and dOut excluded; pool bucket sizes): it grows linearly in T, while a T×T score matrix (last ` +
        `column) would grow quadratically.`,
    );
    out.push('');
    out.push(attentionTable(e));
  }
  if (e.skipped.length) {
    out.push('');
    out.push(`<details><summary>Skipped or reduced (${e.skipped.length}) — why</summary>`, '');
    for (const s of e.skipped) out.push(`- ${s.case} · ${s.impl}: ${s.reason}`);
    out.push('', '</details>');
  }
  if (e.errors.length) {
    out.push('');
    out.push('Errors:');
    for (const s of e.errors) out.push(`- ${s}`);
  }
  return out.join('\n');
}

export function markdownReport(envs: EnvResult[], meta?: ReportMeta): string {
  const out: string[] = ['## Kernel benchmark', ''];
  if (meta) {
    out.push(
      `Generated by \`npm run bench:kernels\` on ` +
        `${meta.date}${meta.commit ? ` at commit ${meta.commit}` : ''}${meta.host ? ` (${meta.host})` : ''}. ` +
        `Figures are single runs on a shared machine: compare ratios measured in the same run rather than ` +
        `absolute numbers.`,
    );
    if (meta.versions)
      out.push(
        '',
        `Versions: ${Object.entries(meta.versions)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}.`,
      );
    out.push('');
  }
  for (const e of envs) out.push(envSection(e), '');
  return out.join('\n');
}
