/**
 * `npm run lint` (and the first step of `npm test`): the checks that keep the code base as it is meant to be.
 *   1. Biome: formatting (line width 120) and lint rules, configured once in biome.json.
 *   2. Line length: no line of code, comment or WGSL over 120 characters (the formatter cannot break strings
 *      or comments, so this catches what it leaves).
 *   3. Layers: imports inside src/ point one way (gpu ← ops ← model ← train ← wire ← net/ledger ← infer ←
 *      coordinator/app ← cli); nothing in src/ imports bench/, scripts/ or tests/; the app never reaches into
 *      the coordinator.
 *   4. Self-contained tests: nothing under tests/ reads a path outside the repository.
 * `--fix` lets Biome rewrite what it can before checking.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
export const MAX_LINE = 120;
/** Generated files, not written by hand. */
const GENERATED = new Set(['src/chain/artifacts.ts']);

/**
 * Layer ranks of src/<folder>: a module may import its own folder or a folder of lower rank. Equal ranks are
 * siblings that must not depend on each other (net and ledger, compress and data, app and coordinator).
 */
export const LAYERS: Record<string, number> = {
  'errors.ts': 0,
  gpu: 1,
  ops: 2,
  model: 3,
  compress: 4,
  data: 4,
  train: 5,
  wire: 6,
  net: 7,
  ledger: 7,
  chain: 7,
  infer: 8,
  coordinator: 9,
  app: 9,
  cli: 10,
};

function files(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        if (name !== 'node_modules' && name !== 'results') walk(p);
      } else if (exts.some((e) => name.endsWith(e))) out.push(p);
    }
  };
  walk(join(ROOT, dir));
  return out.map((p) => relative(ROOT, p).split(sep).join('/'));
}

export interface Problem {
  file: string;
  line: number;
  message: string;
}

export function longLines(paths: string[], read = (p: string) => readFileSync(join(ROOT, p), 'utf8')): Problem[] {
  const out: Problem[] = [];
  for (const file of paths) {
    if (GENERATED.has(file)) continue;
    read(file)
      .split('\n')
      .forEach((text, i) => {
        if (text.length > MAX_LINE)
          out.push({ file, line: i + 1, message: `${text.length} characters (max ${MAX_LINE})` });
      });
  }
  return out;
}

const IMPORT = /(?:^|\s)(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

/** The layer (src/<folder> or src/errors.ts) a repository path belongs to, or undefined outside src/. */
function layerOf(path: string): string | undefined {
  const m = /^src\/([^/]+)/.exec(path);
  return m ? m[1] : undefined;
}

export function layerViolations(paths: string[], read = (p: string) => readFileSync(join(ROOT, p), 'utf8')): Problem[] {
  const out: Problem[] = [];
  for (const file of paths) {
    const from = layerOf(file);
    if (!from) continue;
    const lines = read(file).split('\n');
    lines.forEach((text, i) => {
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2];
        if (!spec.startsWith('.')) continue;
        const target = relative(ROOT, resolve(ROOT, file, '..', spec))
          .split(sep)
          .join('/');
        const to = layerOf(target);
        const at = { file, line: i + 1 };
        if (!to) {
          if (!target.startsWith('shaders/')) out.push({ ...at, message: `src/ imports ${target} (outside src/)` });
          continue;
        }
        if (to === from) continue;
        const rf = LAYERS[from];
        const rt = LAYERS[to];
        if (rf === undefined || rt === undefined) {
          out.push({ ...at, message: `src/${from === undefined ? '' : from} or src/${to} has no layer in LAYERS` });
        } else if (rt >= rf) {
          out.push({
            ...at,
            message: `${from} (layer ${rf}) imports ${to} (layer ${rt}): dependencies point downwards`,
          });
        }
      }
    });
  }
  return out;
}

/** Tests run from a clone of the repository alone: no path that climbs out of it. */
export function outsidePaths(paths: string[], read = (p: string) => readFileSync(join(ROOT, p), 'utf8')): Problem[] {
  const out: Problem[] = [];
  for (const file of paths) {
    read(file)
      .split('\n')
      .forEach((text, i) => {
        for (const m of text.matchAll(/['"`]((?:\.\.\/)+)([^'"`]*)['"`]/g)) {
          const target = relative(ROOT, resolve(ROOT, file, '..', m[1] + m[2]));
          if (target.startsWith('..'))
            out.push({ file, line: i + 1, message: `reads ${m[1]}${m[2]}, outside the repository` });
        }
      });
  }
  return out;
}

function main(): void {
  const fix = process.argv.includes('--fix');
  let failed = false;
  const biome = spawnSync(
    join(ROOT, 'node_modules/.bin/biome'),
    ['check', '--error-on-warnings', ...(fix ? ['--write'] : [])],
    {
      cwd: ROOT,
      stdio: 'inherit',
    },
  );
  if (biome.status !== 0) failed = true;

  const code = ['src', 'tests', 'scripts', 'bench', 'shaders'].flatMap((d) => files(d, ['.ts', '.tsx', '.wgsl']));
  const checks: Array<[string, Problem[]]> = [
    [`lines over ${MAX_LINE} characters`, longLines(code)],
    ['imports against the layers', layerViolations(code.filter((p) => p.startsWith('src/')))],
    ['tests reading outside the repository', outsidePaths(code.filter((p) => p.startsWith('tests/')))],
  ];
  for (const [what, problems] of checks) {
    if (problems.length === 0) continue;
    failed = true;
    console.error(`\n${problems.length} ${what}:`);
    for (const p of problems.slice(0, 50)) console.error(`  ${p.file}:${p.line}  ${p.message}`);
    if (problems.length > 50) console.error(`  … and ${problems.length - 50} more`);
  }
  console.log(failed ? '\nlint: problems found' : `lint: clean (${code.length} files)`);
  process.exit(failed ? 1 : 0);
}

if (import.meta.main) main();
