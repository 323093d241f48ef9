/**
 * `npm run bench:kernels`: the kernel benchmark.
 *   1. Node: our WGSL kernels alone on Dawn (lavapipe here), bench/kernels-node.ts in a child process.
 *   2. Browser: a Vite build of bench/ (bench/vite.config.ts), served from http://127.0.0.1 with COOP/COEP
 *      headers, opened in one headless Debian Chromium (SwiftShader WebGPU here); the page runs our kernels,
 *      onnxruntime-web and TensorFlow.js on the same adapter and reports back through exposed functions.
 *   3. Prints the tables and writes bench/results/kernels.json + kernels.md.
 * Options: `npm run bench:kernels -- --help`. With --node-only, --browser-only, --parts or --only the results go
 * to *.tmp.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { chromium } from '@playwright/test';
import { Option } from 'commander';
import type { EnvResult } from '../bench/cases.ts';
import { gitCommit, markdownReport, type ReportMeta } from '../bench/table.ts';
import { cli, listOf, positiveNumber, regExpSource } from '../src/cli/args.ts';

const root = resolve(import.meta.dirname, '..');
process.chdir(root);
interface BenchCli {
  nodeOnly?: boolean;
  browserOnly?: boolean;
  scale: number;
  parts?: string[];
  only?: string;
  build: boolean;
  reportOnly?: boolean;
}
const args = cli({
  name: 'bench:kernels',
  usage: 'npm run bench:kernels -- [options]',
  description:
    'The kernel benchmark: our WGSL kernels in Node (Dawn) and, in headless Chromium, against onnxruntime-web ' +
    'and TensorFlow.js on the same adapter. Writes bench/results/kernels.json and kernels.md ' +
    '(*.tmp with --node-only, --browser-only, --parts or --only).',
})
  .addOption(new Option('--node-only', 'only the Node run').conflicts('browserOnly'))
  .option('--browser-only', 'only the browser run')
  .option('--scale <k>', 'multiplies every time budget', positiveNumber, 1)
  .option('--parts <list>', 'which sweeps run (default: matmul,attention)', listOf(['matmul', 'attention'] as const))
  .option('--only <regex>', "only the case ids this matches, e.g. '^(up|sq)-256$'", regExpSource)
  .option('--no-build', 'reuse the last Vite build of bench/')
  .option('--report-only', 're-render kernels.md from kernels.json, without measuring')
  .parse()
  .opts<BenchCli>();
const scale = String(args.scale);
const parts = args.parts?.join(',');
const partial = args.only !== undefined || parts !== undefined || args.nodeOnly || args.browserOnly;
const passOn = [
  `--scale=${scale}`,
  ...(args.only === undefined ? [] : [`--only=${args.only}`]),
  ...(parts === undefined ? [] : [`--parts=${parts}`]),
];
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const DIST = join(root, 'node_modules/.cache/tessera-bench');
const RESULTS = join(root, 'bench/results');
const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;

function say(line: string): void {
  console.log(`[bench] ${line}`);
}

function version(pkg: string): string {
  try {
    return JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

// ---- 1. Node -------------------------------------------------------------------------------------

async function runNode(): Promise<EnvResult | undefined> {
  say(`Node: WGSL kernels on Dawn (${elapsed()})`);
  mkdirSync(RESULTS, { recursive: true });
  const out = join(RESULTS, 'node.tmp');
  const child = spawn(
    process.execPath,
    ['--import', './scripts/register.ts', 'bench/kernels-node.ts', `--out=${out}`, ...passOn],
    { stdio: 'inherit' },
  );
  const kill = setTimeout(
    () => {
      say('Node benchmark still running after its time limit: stopping it');
      child.kill('SIGTERM');
    },
    15 * 60_000 * args.scale,
  );
  const code = await new Promise<number | null>((res) => child.on('exit', res));
  clearTimeout(kill);
  if (code !== 0 || !existsSync(out)) {
    say(`Node benchmark failed (exit ${code})`);
    return undefined;
  }
  return JSON.parse(readFileSync(out, 'utf8')) as EnvResult;
}

// ---- 2. Browser ------------------------------------------------------------------------------------

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
};

/** A static server for the build, cross-origin isolated (COOP/COEP) so onnxruntime-web may use threads. */
function serve(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = normalize(join(dir, path === '/' ? 'kernels.html' : path));
    if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': MIME[extname(file)] ?? 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    });
    res.end(readFileSync(file));
  });
  return new Promise((res) =>
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      res({ server, url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}` });
    }),
  );
}

async function runBrowser(): Promise<{ result?: EnvResult; chromium?: string }> {
  if (args.build) {
    say(`Browser: building bench/ with Vite (${elapsed()})`);
    const build = spawnSync(
      join(root, 'node_modules/.bin/vite'),
      ['build', '--config', 'bench/vite.config.ts', '--logLevel', 'warn'],
      { stdio: 'inherit' },
    );
    if (build.status !== 0) {
      say('Vite build of bench/ failed');
      return {};
    }
  }
  if (!existsSync(CHROMIUM)) {
    say(`${CHROMIUM} not found: install Debian's chromium (npm test / npm start do) or set CHROMIUM_PATH`);
    return {};
  }
  const { server, url } = await serve(DIST);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--headless=new',
      '--enable-unsafe-webgpu',
      '--enable-unsafe-swiftshader',
      '--use-webgpu-adapter=swiftshader',
      '--enable-features=Vulkan',
      '--enable-webgpu-developer-features',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  const chromiumVersion = browser.version();
  say(`Browser: Chromium ${chromiumVersion} headless, page ${url}/kernels.html (${elapsed()})`);
  try {
    const page = await browser.newPage();
    let done!: (json: string) => void;
    const resultJson = new Promise<string>((res) => (done = res));
    await page.exposeFunction('benchProgress', (line: string) => console.log(`  [browser] ${line}`));
    await page.exposeFunction('benchResult', (json: string) => done(json));
    page.on('pageerror', (e) => console.log(`  [browser] page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning')
        console.log(`  [browser:${m.type()}] ${m.text().slice(0, 400)}`);
    });
    page.on('crash', () => done(JSON.stringify({ fatal: 'page crashed' })));
    const q = new URLSearchParams({
      scale,
      ...(args.only === undefined ? {} : { only: args.only }),
      ...(parts === undefined ? {} : { parts }),
    });
    await page.goto(`${url}/kernels.html?${q}`);
    // Generous: the page's own budgets end it well before this unless something hangs (e.g. a lost device).
    const limitMs = 20 * 60_000 * args.scale;
    const timer = setTimeout(() => done(JSON.stringify({ fatal: `no result after ${limitMs / 60_000} min` })), limitMs);
    const parsed = JSON.parse(await resultJson) as EnvResult | { fatal: string };
    clearTimeout(timer);
    if ('fatal' in parsed) {
      say(`browser benchmark failed: ${parsed.fatal}`);
      return { chromium: chromiumVersion };
    }
    return { result: parsed, chromium: chromiumVersion };
  } finally {
    await browser.close();
    server.close();
  }
}

// ---- 3. Report ---------------------------------------------------------------------------------------

if (args.reportOnly) {
  // Re-renders kernels.md from kernels.json (e.g. after a change to bench/table.ts), without measuring.
  const saved = JSON.parse(readFileSync(join(RESULTS, 'kernels.json'), 'utf8')) as ReportMeta & {
    environments: EnvResult[];
  };
  const { environments, ...savedMeta } = saved;
  writeFileSync(join(RESULTS, 'kernels.md'), markdownReport(environments, savedMeta));
  say('rewrote bench/results/kernels.md from kernels.json');
  process.exit(0);
}

const envs: EnvResult[] = [];
let chromiumVersion: string | undefined;
if (!args.browserOnly) {
  const r = await runNode();
  if (r) envs.push(r);
}
if (!args.nodeOnly) {
  const r = await runBrowser();
  chromiumVersion = r.chromium;
  if (r.result) envs.unshift(r.result);
}

const commit = gitCommit(root);
const meta: ReportMeta = {
  date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  commit,
  host: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}`,
  versions: {
    ...(chromiumVersion ? { Chromium: chromiumVersion } : {}),
    'onnxruntime-web': version('onnxruntime-web'),
    '@tensorflow/tfjs-core': version('@tensorflow/tfjs-core'),
    '@tensorflow/tfjs-backend-webgpu': version('@tensorflow/tfjs-backend-webgpu'),
    'webgpu (Dawn for Node)': version('webgpu'),
    Node: process.version,
  },
};
const md = markdownReport(envs, meta);
console.log(`\n${md}`);
const suffix = partial ? '.tmp' : '';
mkdirSync(RESULTS, { recursive: true });
writeFileSync(join(RESULTS, `kernels.json${suffix}`), `${JSON.stringify({ ...meta, environments: envs }, null, 2)}\n`);
writeFileSync(join(RESULTS, `kernels.md${suffix}`), md);
say(`wrote bench/results/kernels.json${suffix} and kernels.md${suffix} (${elapsed()})`);
const ok = envs.length === (args.nodeOnly || args.browserOnly ? 1 : 2);
process.exit(ok ? 0 : 1);
