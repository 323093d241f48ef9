/**
 * What the swarm process tests share: Node processes under the TypeScript loader (the worker CLI, other CLIs)
 * and their output, a coordinator in a temporary folder with a model registered from a RunSpec, polling, and
 * the loss curve of a spec trained in this one process to compare a swarm's with.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { startCoordinator } from '../../src/cli/coordinator.ts';
import type { Coordinator } from '../../src/coordinator/index.ts';
import { loadCorpus } from '../../src/data/brown-node.ts';
import type { InferenceBackend } from '../../src/infer/backend.ts';
import type { SwarmInference } from '../../src/infer/swarm-backend.ts';
import { learningRate, TrainingRun } from '../../src/train/recipe.ts';
import type { RunSpec } from '../../src/train/run-spec.ts';
import { testGpu } from '../gpu-fixture.ts';

export const ROOT = new URL('../../', import.meta.url).pathname;

/** `node --import ./scripts/register.ts …args` from the repository root, stdout and stderr piped. */
export function spawnTs(args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  return spawn(join(ROOT, 'node_modules/.bin/node'), ['--import', './scripts/register.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
}

/** Runs a CLI to its end; resolves with its exit status and output. */
export function runTs(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawnTs(args);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('exit', (status) => resolve({ status, stdout, stderr })));
}

/** Calls `keep` with each chunk the process writes, stdout and stderr alike. */
export function onOutput(child: ChildProcess, keep: (chunk: string) => void): void {
  child.stdout!.on('data', (d) => keep(String(d)));
  child.stderr!.on('data', (d) => keep(String(d)));
}

/** Appends each whole line the process writes to `logs` as `<tag> line` (a line cut across chunks waits). */
export function tagLines(child: ChildProcess, tag: string, logs: string[]): void {
  let partial = '';
  onOutput(child, (d) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    for (const l of parts) if (l) logs.push(`<${tag}> ${l}\n`);
  });
}

/** Appends each chunk the process writes to `logs`, after `prefix`. */
export function logTo(child: ChildProcess, logs: string[], prefix = ''): void {
  onOutput(child, (d) => logs.push(prefix + d));
}

/** Its exit status; null when a signal killed it. */
export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => child.on('exit', r));
}

/**
 * Logs the worker's output to `logs` as `[tag] …`; resolves once it serves inference (`ready`), rejects with
 * every log if it exits before.
 */
export function serving(child: ChildProcess, tag: string, logs: string[], ready = /serving inference until stopped/) {
  return new Promise<void>((resolve, reject) => {
    onOutput(child, (d) => {
      logs.push(`[${tag}] ${d}`);
      if (ready.test(d)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`worker ${tag} exited with ${code}:\n${logs.join('')}`)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `ok` every `every` ms until it holds or `ms` have passed; says whether it held. */
export async function waitFor(ok: () => Promise<boolean> | boolean, ms: number, every = 100): Promise<boolean> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) return false;
    await sleep(every);
  }
  return true;
}

/** waitFor, but a timeout fails with what it waited for and the logs so far. */
export async function until(what: string, ok: () => Promise<boolean> | boolean, ms: number, logs: string[] = []) {
  if (!(await waitFor(ok, ms))) throw new Error(`timed out waiting for ${what}\n${logs.join('')}`);
}

/**
 * One swarm test's processes, coordinator and temporary folder, all cleaned up after the suite. Call inside
 * `describe`.
 */
export function swarmFixture(name: string) {
  const dir = mkdtempSync(join(tmpdir(), `tessera-${name}-`));
  const children: ChildProcess[] = [];
  let coord: Coordinator | undefined;
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await coord?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const fixture = {
    dir,
    /** The coordinator started by `start`. */
    get coord(): Coordinator {
      if (!coord) throw new Error('swarmFixture: start() the coordinator first');
      return coord;
    },
    /** A coordinator on a database in `dir` (heartbeats every 2 s, no default model unless `options` say). */
    async start(options: Partial<Parameters<typeof startCoordinator>[0]> = {}): Promise<Coordinator> {
      coord = await startCoordinator({
        dbPath: join(dir, 'c.db'),
        heartbeatMs: 2000,
        registerDefault: false,
        ...options,
      });
      return coord;
    },
    /** Registers model `id` trained as `spec`; the coordinator must answer 201. */
    async register(id: string, name: string, spec: RunSpec): Promise<void> {
      const res = await fetch(`${fixture.coord.url}/api/models`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id, name, spec }),
      });
      expect(res.status, await res.text()).toBe(201);
    },
    /** A coordinator API answer's JSON. */
    async get<T>(path: string): Promise<T> {
      return (await (await fetch(fixture.coord.url + path)).json()) as T;
    },
    /** The path of worker `i`'s identity key in `dir`. */
    key: (i: number) => join(dir, `w${i}.key`),
    /** A worker process of this coordinator, killed after the suite. */
    worker(key: string, flags: string[], env?: NodeJS.ProcessEnv): ChildProcess {
      const child = spawnTs(['src/cli/worker.ts', '--coordinator', fixture.coord.url, '--key', key, ...flags], env);
      children.push(child);
      return child;
    },
  };
  return fixture;
}

/** The coordinator's inference backend: generation and validation through the stage holders. */
export function swarmInference(coord: Coordinator): SwarmInference {
  return (coord as unknown as { inference: InferenceBackend }).inference as SwarmInference;
}

/** The loss of each of the first `steps` steps of `spec` trained in this process, as one peer would. */
export async function oneProcessLosses(spec: RunSpec, steps: number): Promise<number[]> {
  const run = TrainingRun.create(await testGpu(), spec, await loadCorpus(spec.model.vocab));
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    run.adam.lr = learningRate(step, spec);
    losses.push((await run.pipeline.trainStep(run.microBatches(step), spec.batch, spec.model.context)).loss);
  }
  run.destroy();
  return losses;
}
