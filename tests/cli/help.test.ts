/**
 * Every command line answers --help with its options and refuses what it does not understand in one line with
 * exit code 2 — no stack trace. The CLIs run as npm runs them (Node 24 with the WGSL loader); nothing here opens a
 * device, a server or a chain: parsing happens before any of that.
 */
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { httpUrl, intAtLeast, listOf, port, positiveNumber, regExpSource, share } from '../../src/cli/args.ts';

const root = resolve(import.meta.dirname, '../..');
const NODE = join(root, 'node_modules/.bin/node');

interface Cli {
  file: string;
  /** Benchmarks share the CLIs' parser setup: their --help alone shows they are wired to it (spawns are slow). */
  helpOnly?: boolean;
  /** What the usage text must name. */
  names: string[];
  /** A bad value and the option the error line must name. */
  bad?: { args: string[]; names: string };
}

const CLIS: Cli[] = [
  {
    file: 'src/cli/coordinator.ts',
    names: ['--port', '--relay-port', '--db', '--heartbeat-ms', '--no-chain', 'TESSERA_EPOCH_SECONDS', '8787'],
    bad: { args: ['--port', '70000'], names: '--port' },
  },
  {
    file: 'src/cli/worker.ts',
    names: ['--coordinator', '--key', '--model', '--steps', '--until-step', '--tokens-per-second', '--stay'],
    bad: { args: ['--duty-cycle', '0'], names: '--duty-cycle' },
  },
  {
    file: 'src/cli/settle.ts',
    names: ['--model', '--epoch', '--coordinator', '--token-file', 'brown-tiny'],
    bad: { args: ['--coordinator', 'ftp://x'], names: '--coordinator' },
  },
  {
    file: 'src/cli/verify-epoch.ts',
    names: ['<epoch>', '--model', '--coordinator', '--rpc'],
    bad: { args: ['0'], names: 'epoch' },
  },
  {
    file: 'src/cli/train.ts',
    names: ['--steps', '--d-model', '--codec', '--link', '--async', '--out', '64 / 256'],
    bad: { args: ['--link', 'fast'], names: '--link' },
  },
  { file: 'scripts/start.ts', names: ['npm start', 'PORT', 'TESSERA_WORKERS', 'TESSERA_STATE_DIR'] },
  {
    file: 'scripts/bench-kernels.ts',
    names: ['--node-only', '--browser-only', '--scale', '--parts', '--only', '--no-build', '--report-only'],
    bad: { args: ['--scale=0'], names: '--scale' },
  },
  { file: 'bench/kernels-node.ts', names: ['--out', '--scale', '--parts', '--only'], helpOnly: true },
  { file: 'bench/pipeline.ts', names: ['--steps', '--only'], helpOnly: true },
  { file: 'bench/vocab.ts', names: ['--budget-steps'], helpOnly: true },
  { file: 'bench/verify.ts', names: ['--steps', '--epoch'], helpOnly: true },
  { file: 'bench/infer.ts', names: ['--tokens'], helpOnly: true },
  { file: 'bench/turns.ts', names: ['--steps', '--seconds', '--rounds'], helpOnly: true },
];

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[]): Promise<Ran> {
  return new Promise((done) => {
    execFile(
      NODE,
      ['--import', './scripts/register.ts', file, ...args],
      { cwd: root, timeout: 60_000 },
      (e, out, err) => done({ code: e ? ((e as { code?: number }).code ?? null) : 0, stdout: out, stderr: err }),
    );
  });
}

/** The lines a usage error printed: exactly one, with no stack frame. */
function expectOneLine(r: Ran, mention: string): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toContain(mention);
}

// Each case is one process loading its CLI's module graph (seconds on a loaded machine): they run side by side.
const concurrent = { concurrent: true } as const;

describe.each(CLIS)('$file', (c) => {
  it('--help prints the usage with its options and exits 0', concurrent, async () => {
    const r = await run(c.file, ['--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: /);
    for (const name of c.names) expect(r.stdout).toContain(name);
  });

  if (c.helpOnly) return;
  it('refuses an unknown option in one line, exit code 2', concurrent, async () => {
    expectOneLine(await run(c.file, ['--no-such-option']), "unknown option '--no-such-option'");
  });

  if (c.bad) {
    const bad = c.bad;
    it(`refuses a bad value (${bad.args.join(' ')}) in one line, exit code 2`, concurrent, async () => {
      expectOneLine(await run(c.file, bad.args), bad.names);
    });
  }
});

describe('value parsers', () => {
  const refuses = (f: (raw: string) => unknown, raw: string) => expect(() => f(raw)).toThrow(InvalidArgumentError);

  it('integers: bounds, no fractions, no blanks', () => {
    expect(intAtLeast(1)('3')).toBe(3);
    expect(intAtLeast(0)('0')).toBe(0);
    for (const raw of ['0', '1.5', '', ' ', 'x', '1e400']) refuses(intAtLeast(1), raw);
    expect(port('65535')).toBe(65535);
    refuses(port, '65536');
  });

  it('numbers, shares, URLs, regular expressions and lists', () => {
    expect(positiveNumber('0.5')).toBe(0.5);
    refuses(positiveNumber, '0');
    expect(share('1')).toBe(1);
    for (const raw of ['-0.1', '1.01', 'NaN', '']) refuses(share, raw);
    expect(httpUrl('http://127.0.0.1:8787')).toBe('http://127.0.0.1:8787');
    for (const raw of ['127.0.0.1:8787', 'ftp://x', '']) refuses(httpUrl, raw);
    expect(regExpSource('^(up|sq)-256$')).toBe('^(up|sq)-256$');
    refuses(regExpSource, '(');
    expect(listOf(['A', 'B', 'C'])('A,C')).toEqual(['A', 'C']);
    refuses(listOf(['A', 'B', 'C']), 'A,D');
  });
});
