/**
 * `npm test`: the lint checks (scripts/lint.ts), unit + numeric tests (vitest, Node, Dawn on lavapipe), then the
 * browser tests (Playwright, Debian chromium, SwiftShader). Prints one closing line "N passed, N failed" over all.
 * `--fast` (`npm run test:fast`) is the inner loop: the same steps without the slow suites of tests/slow-suites.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { SLOW_BROWSER_SPECS, SLOW_UNIT_SUITES } from '../tests/slow-suites.ts';

interface Step {
  name: string;
  cmd: string[];
  /** A JSON report to count passes and failures from; without one the step counts as one test. */
  report?: string;
  count?: (json: any) => [number, number];
}

const fast = process.argv.includes('--fast');
mkdirSync('test-results', { recursive: true });

const steps: Step[] = [
  { name: 'lint (biome, line length, layers, self-contained tests)', cmd: ['node', 'scripts/lint.ts'] },
  {
    name: 'unit + numeric (vitest)',
    cmd: [
      'vitest',
      'run',
      '--reporter=default',
      '--reporter=json',
      '--outputFile.json=test-results/vitest.json',
      ...(fast ? SLOW_UNIT_SUITES.map((s) => `--exclude=${s}`) : []),
    ],
    report: 'test-results/vitest.json',
    count: (j) => [j.numPassedTests ?? 0, (j.numFailedTests ?? 0) + (j.numTotalTests === 0 ? 1 : 0)],
  },
  {
    name: 'browser (playwright + chromium)',
    cmd: fast
      ? ['sh', '-c', `vite build --logLevel warn && playwright test ${fastSpecs().join(' ')}`]
      : ['npm', 'run', '--silent', 'test:browser'],
    report: 'test-results/playwright.json',
    count: (j) => [j.stats?.expected ?? 0, (j.stats?.unexpected ?? 0) + (j.stats?.flaky ?? 0)],
  },
];

/** The browser specs that are not slow. */
function fastSpecs(): string[] {
  return readdirSync('tests/browser')
    .filter((f) => f.endsWith('.spec.ts'))
    .map((f) => `tests/browser/${f}`)
    .filter((f) => !SLOW_BROWSER_SPECS.includes(f));
}

let passed = 0;
let failed = 0;
let bad = false;
for (const s of steps) {
  console.log(`\n[tessera] ${s.name}`);
  if (s.report) rmSync(s.report, { force: true });
  const r = spawnSync(s.cmd[0], s.cmd.slice(1), { stdio: 'inherit', env: process.env });
  if (s.report && s.count && existsSync(s.report)) {
    const [p, f] = s.count(JSON.parse(readFileSync(s.report, 'utf8')));
    passed += p;
    failed += f;
  } else if (!s.report) {
    if (r.status === 0) passed++;
    else failed++;
  }
  if (r.status !== 0) bad = true;
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(bad || failed > 0 ? 1 : 0);
