/**
 * The WGSL kernels alone in Node (Dawn; lavapipe by default). Spawned by scripts/bench-kernels.ts as
 * `node --import ./scripts/register.ts bench/kernels-node.ts --out=FILE [--scale=K] [--parts=matmul,attention] [--only=REGEX]`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Gpu } from '../src/gpu/index.ts';
import { NODE_BUDGET, scaleBudget } from './cases.ts';
import { runBench } from './run.ts';

const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, '').split('=');
    return [k, v.join('=')] as const;
  }),
);
const out = args.get('out') ?? 'bench/results/node.tmp.json';
const scale = Number(args.get('scale') ?? 1);
const only = args.get('only') ? new RegExp(args.get('only')!) : undefined;
const parts = (args.get('parts') ?? 'matmul,attention').split(',') as Array<'matmul' | 'attention'>;

const gpu = await Gpu.create();
const dawnVersion = (() => {
  try {
    return `npm webgpu ${JSON.parse(readFileSync('node_modules/webgpu/package.json', 'utf8')).version} (Dawn)`;
  } catch {
    return 'npm webgpu (Dawn)';
  }
})();
const log = (line: string) => console.log(`  [node] ${line}`);
log(
  `adapter: ${gpu.adapter.vendor} · ${gpu.adapter.description || gpu.adapter.device || gpu.adapter.architecture}${gpu.adapter.isSoftware ? ' (software)' : ''}; timestamp-query ${gpu.device.features.has('timestamp-query') ? 'yes' : 'no'}`,
);
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
