/**
 * Browser side of `npm run bench:kernels`: runs our kernels and the peers on this page's WebGPU adapter and
 * hands the EnvResult to the driver (window.benchResult, exposed by Playwright) or shows it on the page.
 * Query: ?scale=K (budget multiplier), ?parts=matmul,attention, ?only=REGEX (case ids).
 */
import { Gpu } from '../src/gpu/index.ts';
import { BROWSER_BUDGET, scaleBudget, type EnvResult } from './cases.ts';
import { ortImpl, tfjsPeer } from './peers.ts';
import { runBench } from './run.ts';
import { markdownReport } from './table.ts';

interface Driver {
  benchProgress?: (line: string) => void;
  benchResult?: (json: string) => void;
}
const driver = window as unknown as Driver;
const pre = document.getElementById('log')!;

function log(line: string): void {
  pre.textContent += `${line}\n`;
  if (driver.benchProgress) driver.benchProgress(line);
  else console.log(line);
}

async function main(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const scale = Number(q.get('scale') ?? 1);
  const parts = (q.get('parts') ?? 'matmul,attention').split(',') as Array<'matmul' | 'attention'>;
  const only = q.get('only') ? new RegExp(q.get('only')!) : undefined;
  log(`crossOriginIsolated=${globalThis.crossOriginIsolated}, ${navigator.userAgent}`);
  const gpu = await Gpu.create();
  const adapterName = gpu.adapter.description || gpu.adapter.device || gpu.adapter.architecture;
  const software = gpu.adapter.isSoftware ? ' (software)' : '';
  const timestamps = gpu.device.features.has('timestamp-query') ? 'yes' : 'no';
  log(`adapter: ${gpu.adapter.vendor} · ${adapterName}${software}; timestamp-query ${timestamps}`);
  const peers = parts.includes('matmul') ? [await ortImpl(log), await tfjsPeer(log)] : [];
  for (const p of peers)
    log(
      `peer ${p.impl.id}: ${p.info.version} on ${p.info.backend}; timing: ` +
        `${p.info.timing}${p.info.note ? ` (${p.info.note})` : ''}`,
    );
  const result: EnvResult = await runBench({
    env: 'browser',
    gpu,
    budget: scaleBudget(BROWSER_BUDGET, scale),
    log,
    peers,
    parts,
    filter: only ? (id) => only.test(id) : undefined,
    runtime: navigator.userAgent,
  });
  if (driver.benchResult) driver.benchResult(JSON.stringify(result));
  else pre.textContent += `\n${markdownReport([result])}`;
}

main().catch((e: unknown) => {
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  log(`FATAL ${msg}`);
  if (driver.benchResult) driver.benchResult(JSON.stringify({ fatal: msg }));
});
