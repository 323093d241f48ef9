import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exited, logTo, spawnTs } from './net/worker-processes.ts';

/**
 * SLOW (~5 min): `npm run chaos`, shortened. The real stack — anvil, `npm run coordinator`, four `npm run worker`
 * processes with their keys and state folders — trains a 2-stage model while a seeded schedule SIGKILLs and
 * restarts a worker, SIGSTOPs one past its heartbeat timeout, SIGKILLs and restarts the coordinator and stops and
 * restarts the chain node (six faults, every kind at least once). The run then checks every invariant itself
 * (bench/chaos-checks.ts) and exits 1 when one fails; here each is also read back from its JSON report by name, so
 * a failure says which.
 */
const dir = mkdtempSync(join(tmpdir(), 'tessera-chaos-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Report {
  ok: boolean;
  faults: Array<{ kind: string; recoverySeconds: number | null }>;
  invariants: Array<{ name: string; value: number; ok: boolean; examples: string[] }>;
  steps: { recorded: number; resumes: number };
  epochs: Array<{ root: string | null; recomputed: string | null; onChain: string | null }>;
}

describe('chaos (slow)', () => {
  it('six seeded faults of every kind: no step or receipt lost, doubled or reset, every root verifies', async () => {
    const out = join(dir, 'chaos.json');
    const child = spawnTs([
      'bench/chaos.ts',
      '--seconds',
      '150',
      '--faults',
      '6',
      '--seed',
      '3',
      '--workers',
      '4',
      '--epoch-seconds',
      '30',
      '--out',
      out,
    ]);
    const logs: string[] = [];
    logTo(child, logs);
    const code = await exited(child);
    // The run's own report (its tables, the failing invariants with examples, where its logs are kept).
    const text = logs.join('').slice(-6000);
    const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
    expect(report.faults.length, text).toBeGreaterThanOrEqual(6);
    expect(new Set(report.faults.map((f) => f.kind)), text).toEqual(
      new Set(['worker-kill', 'worker-stop', 'coordinator-kill', 'chain-restart']),
    );
    expect(report.epochs.length, text).toBeGreaterThan(0);
    for (const e of report.epochs) {
      expect(e.recomputed, text).toBe(e.root);
      expect(e.onChain, text).toBe(e.root);
    }
    const failed = report.invariants.filter((i) => !i.ok).map((i) => `${i.name}: ${i.value} (${i.examples[0] ?? ''})`);
    expect(failed, text).toEqual([]);
    expect(code, text).toBe(0);
  });
});
