/**
 * `npm run chaos`: the local stack under a seeded schedule of faults, then the invariants the swarm promises
 * (issue 15): no step lost, applied twice or reset to the seed, no receipt lost or credited twice, every settled
 * root equal to the one recomputed from the published receipts and to the one on chain, a recomputed step's
 * loss equal to the one first recorded, and the time from each fault to the next completed step.
 *
 *   npm run chaos -- --seconds 540 --seed 7 --workers 4 [--tab]
 *
 * The stack (bench/chaos-stack.ts): anvil, `npm run coordinator`, N `npm run worker` processes, each with its key
 * and state folder in a temporary folder, training a 2-stage model (smallSpec, a snapshot every 5 steps), and with
 * --tab one headless Chromium tab on the Volunteer page. Faults, one per slot of the run, kinds in a seeded order:
 * SIGKILL a worker and start it again (same key and state), SIGSTOP a worker past its heartbeat timeout then
 * SIGCONT, SIGKILL the coordinator and start it again (same database and ports), stop the chain node (SIGTERM,
 * with --chain-kill SIGKILL half the time) and start it again on its state file, close the tab and open it again.
 * A fault waits for the swarm to have recovered from the one before (at most a minute).
 *
 * Writes bench/results/chaos.{json,md,svg} (or --out's folder and name); exits 1 when an invariant fails.
 */
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { PreviewServer } from 'vite';
import { chainClients, readRoot } from '../src/chain/client.ts';
import { cli, nonEmpty, nonNegativeInt, positiveInt } from '../src/cli/args.ts';
import { adminToken } from '../src/cli/coordinator.ts';
import { table } from '../src/cli/table.ts';
import { recomputeEpoch, type PublishedBinding } from '../src/ledger/recompute.ts';
import type { SignedReceipt } from '../src/ledger/receipt.ts';
import { loadOrCreateKey } from '../src/net/identity-node.ts';
import { Rng } from '../src/ops/rng.ts';
import { lineChartSvg } from '../src/train/chart.ts';
import { smallSpec } from '../src/train/run-spec.ts';
import type { EpochDetail, EpochReceiptsPage, EpochSummary } from '../src/wire/index.ts';
import { freePort } from '../tests/browser/free-port.ts';
import { waitFor } from '../tests/net/worker-processes.ts';
import {
  accountSteps,
  checkReceipts,
  checkStepRecords,
  recomputedLosses,
  recordingRounds,
  refusedCounted,
  refusedReceipts,
  type Incarnation,
} from './chaos-checks.ts';
import {
  chainProc,
  chainUp,
  coordinatorProc,
  coordinatorUp,
  HOST,
  Tab,
  workerProc,
  workerStateFlag,
  type Exit,
  type Proc,
} from './chaos-stack.ts';
import { bindPeers, CHAIN_ID } from './chaos-wallets.ts';
import { gitCommit } from './table.ts';

interface ChaosCli {
  seconds: number;
  seed: number;
  workers: number;
  faults?: number;
  tab?: boolean;
  chainKill?: boolean;
  epochSeconds: number;
  out: string;
  keep?: boolean;
}

const ROOT = resolve(import.meta.dirname, '..');
const o = cli({
  name: 'chaos',
  usage: 'npm run chaos -- [options]',
  description:
    'Runs the local stack (chain, coordinator, Node workers, optionally a tab) under a seeded schedule of faults, ' +
    'then checks that no step or receipt was lost, doubled or reset and that every settled root verifies. ' +
    'Writes bench/results/chaos.{json,md,svg}; exit code 1 when an invariant fails.',
})
  .option('--seconds <n>', 'how long faults are injected', positiveInt, 540)
  .option('--seed <n>', 'seeds the fault schedule and the model', nonNegativeInt, 7)
  .option('--workers <n>', 'Node workers (at least 4 for two holders per stage)', positiveInt, 4)
  .option('--faults <n>', 'faults to inject, one per slot of the run (default: one per 25 s, at least 6)', positiveInt)
  .option('--tab', 'add a headless Chromium tab on the Volunteer page (slow: SwiftShader on 2 cores)')
  .option('--chain-kill', 'stop the chain node with SIGKILL half the time (it loses what it had not dumped)')
  .option('--epoch-seconds <n>', 'settlement period of the coordinator', positiveInt, 60)
  .option('--out <file>', 'the JSON report (the .md and .svg go beside it)', nonEmpty, 'bench/results/chaos.json')
  .option('--keep', 'keep the temporary folder (logs, keys, state, database)')
  .parse()
  .opts<ChaosCli>();

const MODEL = 'chaos';
/** The coordinator's default: on 2 loaded cores a shorter beat declares busy workers gone while they start. */
const HEARTBEAT_MS = 2000;
/** How long a SIGSTOPped worker stays stopped: past the 3 missed heartbeats after which it is declared gone. */
const STOP_MS = 3 * HEARTBEAT_MS + 3000;
/** The longest a fault waits for the swarm to recover from the one before. */
const RECOVERY_WAIT_MS = 60_000;
const FAULTS = o.faults ?? Math.max(6, Math.floor(o.seconds / 25));
const spec = { ...smallSpec({ layout: [1, 1], microBatches: 4, batch: 2, seed: o.seed }), snapshotEvery: 5 };
const out = resolve(ROOT, o.out);
const dir = mkdtempSync(join(tmpdir(), 'tessera-chaos-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => console.log(`[chaos] ${s}`);

type Kind = 'worker-kill' | 'worker-stop' | 'coordinator-kill' | 'chain-restart' | 'tab-close';
interface Fault {
  kind: Kind;
  target: string;
  signal: string;
  /** ms since the epoch: the fault began, and the faulted part was back (restarted, continued, reopened). */
  at: number;
  end: number;
  /** Steps recorded when the fault began. */
  stepsAt: number;
}

const exits: Exit[] = [];
const [chainPort, apiPort, relayPort] = [await freePort(), await freePort(), await freePort()];
const rpcUrl = `http://${HOST}:${chainPort}`;
const api = `http://${HOST}:${apiPort}`;
const chain = chainProc(dir, chainPort, exits);
const coordinator = coordinatorProc(
  dir,
  { port: apiPort, relayPort, rpcUrl, heartbeatMs: HEARTBEAT_MS, epochSeconds: o.epochSeconds },
  exits,
);
const stateFlag = await workerStateFlag();
const workers = Array.from({ length: o.workers }, (_, i) =>
  workerProc(dir, i + 1, { coordinator: api, model: MODEL, stateFlag }, exits),
);
let tab: Tab | undefined;
let app: PreviewServer | undefined;
const faults: Fault[] = [];
let done = 0;
let running = true;
/** When the fault schedule began (ms since the epoch): fault times in the report count from it. */
let chaosStart = 0;

async function get<T>(path: string): Promise<T> {
  const res = await fetch(api + path);
  const body = (await res.json()) as T & { error?: string };
  if (!res.ok) throw new Error(`${path}: ${res.status} ${body.error ?? ''}`);
  return body;
}

/** Steps the coordinator has recorded as done (the last known count while it is down). */
async function poll(): Promise<number> {
  try {
    done = (await get<{ model: { steps: { done: number } } }>(`/api/models/${MODEL}`)).model.steps.done;
  } catch {
    // Down (a fault): keep the last count.
  }
  return done;
}

/** Every page of a cursor-paged list. */
async function pages<T>(path: (since: number) => string, items: (page: T) => unknown[], next: (page: T) => number) {
  const all: unknown[] = [];
  for (let since = 0; ; ) {
    const page = await get<T>(path(since));
    const got = items(page);
    all.push(...got);
    if (got.length < 1000) return all;
    since = next(page);
  }
}

/** A process that ended without the run asking is started again, so the run goes on; the exit is still counted. */
function restartOnCrash(p: Proc): void {
  const watch = () =>
    p.child?.once('exit', () => {
      const e = exits.at(-1);
      if (!running || !e || e.expected) return;
      say(`${p.name} exited by itself (code ${e.code}, signal ${e.signal}); starting it again`);
      setTimeout(() => {
        if (running && !p.alive) {
          p.start();
          watch();
        }
      }, 2000);
    });
  watch();
}

function startWatched(p: Proc): void {
  p.start();
  restartOnCrash(p);
}

async function setUp(): Promise<void> {
  say(`folder ${dir}; ${o.workers} workers${o.tab ? ' and a tab' : ''}; ${FAULTS} faults over ${o.seconds} s`);
  startWatched(chain);
  if (!(await chainUp(rpcUrl))) throw new Error('the chain did not start');
  adminToken(dir);
  startWatched(coordinator);
  if (!(await coordinatorUp(api, 120_000))) throw new Error('the coordinator did not start');
  const res = await fetch(`${api}/api/models`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: MODEL, name: 'chaos run', spec }),
  });
  if (res.status !== 201) throw new Error(`registering the model: ${await res.text()}`);
  const keys = await Promise.all(workers.map((_, i) => loadOrCreateKey(join(dir, `w${i + 1}`, 'peer.key'))));
  const tabKey = await generateKeyPair('Ed25519');
  await bindPeers(api, o.tab ? [...keys, tabKey] : keys);
  say(
    stateFlag
      ? `workers keep their state with ${stateFlag}`
      : 'the worker has no state-folder option: each keeps only its key',
  );
  for (const w of workers) startWatched(w);
  if (o.tab) {
    const { preview } = await import('vite');
    app = await preview({
      root: ROOT,
      logLevel: 'warn',
      preview: { host: HOST, port: await freePort(), strictPort: true, proxy: { '/api': { target: api } } },
    });
    tab = new Tab(app.resolvedUrls!.local[0].replace(/\/$/, ''), MODEL, privateKeyToProtobuf(tabKey));
    await tab.launch();
    await tab.openAndJoin();
  }
  const t0 = Date.now();
  if (!(await waitFor(async () => (await poll()) >= 1, 240_000, 1000)))
    throw new Error('the swarm never recorded a step');
  say(`first step recorded ${((Date.now() - t0) / 1000).toFixed(0)} s after the workers started`);
}

/** A seeded order of kinds: each kind once first (so a short run still has every kind), then any. */
function kinds(rng: Rng): Kind[] {
  const all: Kind[] = ['worker-kill', 'worker-stop', 'coordinator-kill', 'chain-restart'];
  if (o.tab) all.push('tab-close');
  const first = [...all].sort(() => rng.next() - 0.5);
  const weighted: Kind[] = [...all, 'worker-kill', 'worker-kill'];
  return Array.from({ length: FAULTS }, (_, i) => first[i] ?? weighted[rng.int(weighted.length)]);
}

async function inject(kind: Kind, rng: Rng): Promise<Fault> {
  const at = Date.now();
  const f: Fault = { kind, target: '', signal: '', at, end: at, stepsAt: done };
  const pause = () => sleep(1000 + rng.int(4000));
  if (kind === 'worker-kill' || kind === 'worker-stop') {
    const up = workers.filter((w) => w.alive && !w.stopped);
    const w = up[rng.int(up.length)];
    f.target = w.name;
    if (kind === 'worker-kill') {
      f.signal = 'SIGKILL';
      await w.stop('SIGKILL');
      await sleep(500 + rng.int(2500));
      w.start();
      restartOnCrash(w);
    } else {
      f.signal = `SIGSTOP ${STOP_MS / 1000} s, SIGCONT`;
      w.signal('SIGSTOP');
      await sleep(STOP_MS);
      w.signal('SIGCONT');
    }
  } else if (kind === 'coordinator-kill') {
    f.target = 'coordinator';
    f.signal = 'SIGKILL';
    await coordinator.stop('SIGKILL');
    await pause();
    startWatched(coordinator);
    if (!(await coordinatorUp(api))) say('the coordinator did not come back within a minute');
  } else if (kind === 'chain-restart') {
    f.target = 'chain';
    f.signal = o.chainKill && rng.next() < 0.5 ? 'SIGKILL' : 'SIGTERM';
    await chain.stop(f.signal as NodeJS.Signals);
    await pause();
    startWatched(chain);
    if (!(await chainUp(rpcUrl))) say('the chain did not come back');
  } else {
    f.target = 'tab';
    f.signal = 'close';
    await tab!.close();
    await pause();
    await tab!.openAndJoin().catch((e: Error) => say(`reopening the tab: ${e.message.split('\n')[0]}`));
  }
  f.end = Date.now();
  return f;
}

/** Until a step is recorded after `since` (ms since the epoch), at most `ms`. */
async function recovered(since: number, ms: number): Promise<boolean> {
  const from = await poll();
  return waitFor(async () => Date.now() > since && (await poll()) > from, ms, 500);
}

async function chaos(): Promise<void> {
  const rng = new Rng(o.seed * 7919 + 1);
  const order = kinds(rng);
  const t0 = Date.now();
  chaosStart = t0;
  const slot = (o.seconds * 1000) / FAULTS;
  const progress = setInterval(() => {
    const up = workers.filter((w) => w.alive && !w.stopped).length;
    say(
      `${((Date.now() - t0) / 1000).toFixed(0)} s / ${o.seconds} s · faults ${faults.length}/${FAULTS} · step ` +
        `${done} · workers ${up}/${workers.length} up · coordinator ${coordinator.alive ? 'up' : 'down'} · chain ` +
        `${chain.alive ? 'up' : 'down'}`,
    );
  }, 10_000);
  try {
    for (const [i, kind] of order.entries()) {
      const due = t0 + (i + 0.2 + 0.6 * rng.next()) * slot;
      while (Date.now() < due) {
        await poll();
        await sleep(Math.max(0, Math.min(1000, due - Date.now())));
      }
      const last = faults.at(-1);
      if (last && !(await recovered(last.end, RECOVERY_WAIT_MS)))
        say(`no step recorded within ${RECOVERY_WAIT_MS / 1000} s of fault ${faults.length}; injecting the next`);
      const f = await inject(kind, rng);
      faults.push(f);
      say(`fault ${faults.length}/${FAULTS}: ${f.kind} ${f.target} (${f.signal}) at step ${f.stepsAt}`);
    }
    while (Date.now() < t0 + o.seconds * 1000) {
      await poll();
      await sleep(1000);
    }
    for (const w of workers) if (w.stopped) w.signal('SIGCONT');
    const last = faults.at(-1);
    if (last && !(await recovered(last.end, 120_000))) say('no step recorded after the last fault');
  } finally {
    clearInterval(progress);
  }
}

interface Settled {
  epochs: Array<EpochSummary & { recomputed: string | null; onChain: string | null; problems: string[] }>;
  receipts: SignedReceipt[];
  throughStep: number;
}

/** Closes the last epoch, waits for its root to be posted, and recomputes every epoch as verify-epoch does. */
async function settle(): Promise<Settled> {
  const token = adminToken(dir);
  const close = await fetch(`${api}/api/models/${MODEL}/epochs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: '{}',
  });
  if (close.status !== 201 && close.status !== 409)
    say(`closing the last epoch: ${close.status} ${await close.text()}`);
  const list = () => get<{ epochs: EpochSummary[] }>(`/api/models/${MODEL}/epochs`);
  await waitFor(async () => (await list()).epochs.every((e) => e.status !== 'pending-chain' || !e.root), 60_000, 1000);
  const summaries = (await list()).epochs;
  const addrs = (await get<{ chain: { models?: Record<string, Parameters<typeof readRoot>[1]> } | null }>('/api/chain'))
    .chain?.models?.[MODEL];
  const byEpoch: SignedReceipt[][] = [];
  const epochs: Settled['epochs'] = [];
  for (const e of summaries) {
    const detail = await get<EpochDetail>(`/api/models/${MODEL}/epochs/${e.epoch}`);
    const rs = (await pages<EpochReceiptsPage<SignedReceipt>>(
      (since) => `/api/models/${MODEL}/epochs/${e.epoch}/receipts?since=${since}&limit=1000`,
      (p) => p.receipts,
      (p) => p.next,
    )) as Array<SignedReceipt & { id?: number }>;
    byEpoch.push(rs.map(({ id: _id, ...r }) => r));
    const mine = await recomputeEpoch(spec.layout.length, byEpoch, detail.bindings as PublishedBinding[], CHAIN_ID);
    const onChain = addrs ? (await readRoot(chainClients(rpcUrl, CHAIN_ID), addrs, BigInt(e.epoch))).root : null;
    epochs.push({ ...e, recomputed: mine.root, onChain, problems: mine.problems });
  }
  return { epochs, receipts: byEpoch.flat(), throughStep: summaries.at(-1)?.throughStep ?? -1 };
}

interface Invariant {
  name: string;
  value: number;
  ok: boolean;
  examples: string[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : Number.NaN;
}

async function main(): Promise<number> {
  const startedAt = Date.now();
  await setUp();
  await chaos();
  running = false;
  const finalDone = await poll();
  say(`chaos over at step ${finalDone}; stopping the workers (SIGTERM) and settling`);
  await tab?.quit();
  await Promise.all(workers.map((w) => w.stop('SIGTERM', 20_000)));
  const settled = await settle();
  const { metrics } = {
    metrics: (await pages<{ metrics: Array<{ step: number; kind: string; value: number; at: number }>; next: number }>(
      (since) => `/api/models/${MODEL}/metrics?since=${since}&limit=1000`,
      (p) => p.metrics,
      (p) => p.next,
    )) as Array<{ step: number; kind: string; value: number; at: number }>,
  };
  await coordinator.stop('SIGTERM');
  await chain.stop('SIGTERM');
  await app?.close();

  const train = metrics.filter((m) => m.kind === 'train').sort((a, b) => a.step - b.step);
  const records = checkStepRecords(train);
  const incarnations: Incarnation[] = [...workers.flatMap((w) => w.incarnations), ...(tab?.incarnations ?? [])];
  const account = accountSteps(incarnations);
  const recomputed = recomputedLosses(incarnations);
  const refused = refusedReceipts(incarnations);
  const rounds = recordingRounds(incarnations);
  const receipts = checkReceipts(settled.receipts, {
    throughStep: settled.throughStep,
    stages: spec.layout.length,
    microBatches: spec.microBatches,
    rounds,
  });
  const byTime = [...train].sort((a, b) => a.at - b.at);
  const recovery = faults.map((f) => {
    const next = byTime.find((m) => m.at > f.end);
    return { ...f, recoverySeconds: next ? (next.at - f.at) / 1000 : null, outageSeconds: (f.end - f.at) / 1000 };
  });
  const badRoots = settled.epochs.filter(
    (e) => e.problems.length > 0 || !e.root || e.recomputed !== e.root || e.onChain !== e.root,
  );
  const unexpected = exits.filter((e) => !e.expected);
  const faultKinds = new Set(faults.map((f) => f.kind));
  const inv = (name: string, bad: string[], ok = bad.length === 0, value = bad.length): Invariant => ({
    name,
    value,
    ok,
    examples: bad.slice(0, 5),
  });
  const invariants: Invariant[] = [
    {
      name: 'faults injected',
      value: faults.length,
      ok: faults.length >= FAULTS && faultKinds.size >= (o.tab ? 5 : 4),
      examples: [...faultKinds],
    },
    inv('steps lost (no record between 0 and the last)', records.lost.map(String)),
    inv('steps recorded twice', records.twice.map(String)),
    inv('steps applied twice (worker logs)', account.appliedTwice),
    inv('steps skipped by a stage (worker logs)', account.skipped),
    inv('resets to the seed (worker logs)', account.resets),
    inv(
      'resets seen in the loss curve',
      records.lossResets.map((s) => `step ${s}`),
    ),
    inv(
      'recomputed steps whose loss differs > 1e-5 relative',
      recomputed.filter((r) => !(r.relative <= 1e-5)).map((r) => `step ${r.step}: ${r.recorded} vs ${r.recomputed}`),
    ),
    inv('receipts double-credited (same identity twice)', receipts.duplicates),
    inv('receipts lost (units with no receipt of the recording round)', receipts.missingUnits),
    inv(
      'receipts refused for work that counted',
      refusedCounted(refused, settled.receipts, rounds, new Set(train.map((m) => m.step))),
    ),
    inv(
      'settled roots not equal to recomputed and on-chain',
      badRoots.map(
        (e) =>
          `epoch ${e.epoch}: published ${e.root} recomputed ${e.recomputed} on chain ${e.onChain}` +
          `${e.problems.length ? ` (${e.problems.slice(0, 2).join('; ')})` : ''}`,
      ),
    ),
    inv('epochs settled', [], settled.epochs.length > 0, settled.epochs.length),
    inv(
      'processes that exited by themselves',
      unexpected.map((e) => `${e.name}: code ${e.code} signal ${e.signal}`),
    ),
    inv(
      'faults with no step recorded after them',
      recovery.filter((r) => r.recoverySeconds === null).map((r) => `${r.kind} ${r.target}`),
    ),
    inv('resume lines in the worker logs', [], account.resumes > 0, account.resumes),
  ];

  const perKind = [...faultKinds].map((k) => {
    const rs = recovery.filter((r) => r.kind === k).map((r) => r.recoverySeconds ?? Number.NaN);
    return [k, String(rs.length), median(rs).toFixed(1), Math.max(...rs).toFixed(1)];
  });
  const ok = invariants.every((i) => i.ok);
  const commit = gitCommit(ROOT) ?? '';
  const report = {
    date: new Date().toISOString(),
    commit,
    seed: o.seed,
    seconds: o.seconds,
    wallSeconds: (Date.now() - startedAt) / 1000,
    workers: o.workers,
    tab: !!o.tab,
    workerStateFlag: stateFlag ?? null,
    spec: {
      layout: spec.layout,
      microBatches: spec.microBatches,
      batch: spec.batch,
      snapshotEvery: spec.snapshotEvery,
    },
    steps: {
      recorded: train.length,
      last: records.last,
      applied: account.stepLines,
      resumes: account.resumes,
      rollbacks: account.rollbacks,
      snapshotLines: account.snapshotLines,
      pausedLines: account.pausedLines,
      recomputed: recomputed.length,
      worstRecomputedRelative: recomputed.reduce((a, r) => Math.max(a, r.relative), 0),
    },
    receipts: {
      published: receipts.receipts,
      throughStep: settled.throughStep,
      // Refusals of all kinds, those of attempts rolled back and trained again by a later round included.
      refused: refused.length,
      refusedExamples: refused.slice(0, 5),
      stepsWithRecordingRound: rounds.size,
    },
    epochs: settled.epochs.map((e) => ({
      epoch: e.epoch,
      throughStep: e.throughStep,
      status: e.status,
      root: e.root,
      recomputed: e.recomputed,
      onChain: e.onChain,
    })),
    faults: recovery.map((r) => ({
      kind: r.kind,
      target: r.target,
      signal: r.signal,
      atSeconds: (r.at - chaosStart) / 1000,
      stepsAt: r.stepsAt,
      outageSeconds: r.outageSeconds,
      recoverySeconds: r.recoverySeconds,
    })),
    invariants,
    ok,
  };

  const invTable = table(
    ['invariant', 'value', 'ok'],
    invariants.map((i) => [i.name, String(i.value), i.ok ? 'yes' : 'NO']),
  );
  const faultTable = table(
    ['#', 'at (s)', 'fault', 'target', 'signal', 'step', 'to next step (s)'],
    report.faults.map((f, i) => [
      String(i + 1),
      f.atSeconds.toFixed(0),
      f.kind,
      f.target,
      f.signal,
      String(f.stepsAt),
      f.recoverySeconds === null ? '–' : f.recoverySeconds.toFixed(1),
    ]),
  );
  const kindTable = table(['fault', 'count', 'median to next step (s)', 'max (s)'], perKind);
  const md = [
    '## Chaos',
    '',
    `Generated by \`npm run chaos -- --seconds ${o.seconds} --seed ${o.seed} --workers ${o.workers}` +
      `${o.tab ? ' --tab' : ''}\` on ${report.date.slice(0, 10)}${commit ? ` at ${commit}` : ''}: ` +
      `${faults.length} faults, ${train.length} steps recorded, ${settled.epochs.length} epochs settled, ` +
      `${receipts.receipts} receipts; ${ok ? 'every invariant holds' : 'SOME INVARIANTS FAIL'}.`,
    '',
    invTable,
    '',
    kindTable,
    '',
  ].join('\n');
  console.log(`\n${md}\n${faultTable}\n`);
  for (const i of invariants.filter((x) => !x.ok && x.examples.length))
    console.log(`${i.name}:\n  ${i.examples.join('\n  ')}`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  const stem = join(dirname(out), basename(out, '.json'));
  writeFileSync(`${stem}.md`, `${md}\n${faultTable}\n`);
  const colors: Record<Kind, string> = {
    'worker-kill': '#d62728',
    'worker-stop': '#ff7f0e',
    'coordinator-kill': '#1f77b4',
    'chain-restart': '#2ca02c',
    'tab-close': '#9467bd',
  };
  writeFileSync(
    `${stem}.svg`,
    lineChartSvg({
      title: `Time from each fault to the next recorded step (seed ${o.seed})`,
      xLabel: 'fault at (s after the schedule began)',
      yLabel: 'seconds to the next step',
      width: 720,
      height: 360,
      yMin: 0,
      series: [...faultKinds].map((k) => ({
        name: k,
        color: colors[k],
        markers: true,
        dash: '2 6',
        points: report.faults
          .filter((f) => f.kind === k)
          .map((f) => [f.atSeconds, f.recoverySeconds ?? Number.NaN] as const),
      })),
    }),
  );
  say(`wrote ${out} (and .md, .svg); logs in ${dir}${o.keep || !ok ? '' : ' (removed; --keep keeps them)'}`);
  return ok ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(`[chaos] failed: ${(e as Error).stack ?? e}`);
} finally {
  running = false;
  await Promise.all([...workers, coordinator, chain].map((p) => p.stop('SIGKILL', 1000).catch(() => {})));
  await tab?.quit().catch(() => {});
  await app?.close().catch(() => {});
  if (!o.keep && code === 0) rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
