/**
 * `npm test`: unit + numeric tests (vitest, Node, Dawn on lavapipe), then the browser tests (Playwright,
 * Debian chromium, SwiftShader). Prints one closing line "N passed, N failed" over both.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync } from 'node:fs';

mkdirSync('test-results', { recursive: true });
const steps: Array<{ name: string; cmd: string[]; report: string; count: (json: any) => [number, number] }> = [
  {
    name: 'unit + numeric (vitest)',
    cmd: ['vitest', 'run', '--reporter=default', '--reporter=json', '--outputFile.json=test-results/vitest.json'],
    report: 'test-results/vitest.json',
    count: (j) => [j.numPassedTests ?? 0, (j.numFailedTests ?? 0) + (j.numTotalTests === 0 ? 1 : 0)],
  },
  {
    name: 'browser (playwright + chromium)',
    cmd: ['npm', 'run', '--silent', 'test:browser'],
    report: 'test-results/playwright.json',
    count: (j) => [j.stats?.expected ?? 0, (j.stats?.unexpected ?? 0) + (j.stats?.flaky ?? 0)],
  },
];

let passed = 0;
let failed = 0;
let bad = false;
for (const s of steps) {
  console.log(`\n[tessera] ${s.name}`);
  const r = spawnSync(s.cmd[0], s.cmd.slice(1), { stdio: 'inherit', env: process.env });
  if (existsSync(s.report)) {
    const [p, f] = s.count(JSON.parse(readFileSync(s.report, 'utf8')));
    passed += p;
    failed += f;
  }
  if (r.status !== 0) bad = true;
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(bad || failed > 0 ? 1 : 0);
