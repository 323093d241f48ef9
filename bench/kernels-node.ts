/**
 * The WGSL kernels alone in Node (Dawn; lavapipe by default). Spawned by scripts/bench-kernels.ts as
 * `node --import ./scripts/register.ts bench/kernels-node.ts --out=FILE [--scale=K] [--parts=matmul,attention]
 * [--only=REGEX]`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Option } from 'commander';
import { cli, listOf, nonEmpty, positiveNumber, regExpSource } from '../src/cli/args.ts';
import { Gpu } from '../src/gpu/index.ts';
import { NODE_BUDGET, scaleBudget } from './cases.ts';
import { runBench } from './run.ts';

const args = cli({
  name: 'kernels-node',
  usage: 'node --import ./scripts/register.ts bench/kernels-node.ts [options]',
  description: 'The WGSL kernels alone in Node (Dawn); scripts/bench-kernels.ts runs it.',
})
  .option('--out <file>', 'where the JSON result goes', nonEmpty, 'bench/results/node.tmp.json')
  .option('--scale <k>', 'multiplies every time budget', positiveNumber, 1)
  .addOption(
    new Option('--parts <list>', 'which sweeps run')
      .argParser(listOf(['matmul', 'attention'] as const))
      .default(['matmul', 'attention'], 'matmul,attention'),
  )
  .option('--only <regex>', 'only the case ids this matches', regExpSource)
  .parse()
  .opts<{ out: string; scale: number; parts: Array<'matmul' | 'attention'>; only?: string }>();
const { out, scale, parts } = args;
const only = args.only === undefined ? undefined : new RegExp(args.only);

const gpu = await Gpu.create();
const dawnVersion = (() => {
  try {
    return `npm webgpu ${JSON.parse(readFileSync('node_modules/webgpu/package.json', 'utf8')).version} (Dawn)`;
  } catch {
    return 'npm webgpu (Dawn)';
  }
})();
const log = (line: string) => console.log(`  [node] ${line}`);
const adapterName = gpu.adapter.description || gpu.adapter.device || gpu.adapter.architecture;
const software = gpu.adapter.isSoftware ? ' (software)' : '';
const timestamps = gpu.device.features.has('timestamp-query') ? 'yes' : 'no';
log(`adapter: ${gpu.adapter.vendor} · ${adapterName}${software}; timestamp-query ${timestamps}`);
const result = await runBench({
  env: 'node',
  gpu,
  budget: scaleBudget(NODE_BUDGET, scale),
  log,
  parts,
  filter: only ? (id) => only.test(id) : undefined,
  runtime: `Node ${process.version}, ${dawnVersion}, VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? '(default)'}`,
  peers: [],
});
writeFileSync(out, JSON.stringify(result, null, 2));
gpu.destroy();
process.exit(0);
