/**
 * The chaos run's local stack, each part a real process the run can SIGKILL, SIGSTOP or stop and start again on the
 * same state: the chain (the anvil binary on a fixed port with its state file), the coordinator (`npm run
 * coordinator` on the same database, API and relay ports), Node workers (`npm run worker`, each with its own key
 * and state folder) and, optionally, one headless Chromium tab on the Volunteer page (the built app served by
 * vite preview with /api proxied to the coordinator, as `npm start` serves it). Every line a process writes goes to
 * its log file under the run's folder and, for workers and the tab, into its incarnation's lines for the checks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from '@playwright/test';
import { anvilBinary, ANVIL_KEYS } from '../src/chain/anvil.ts';
import { CHAIN_ID } from './chaos-wallets.ts';
import type { Incarnation } from './chaos-checks.ts';
import { onOutput, spawnTs, waitFor } from '../tests/net/worker-processes.ts';

export const HOST = '127.0.0.1';

/** Why a process ended: a signal the run sent, or on its own (an exit code, or a signal nobody sent). */
export interface Exit {
  name: string;
  at: number;
  code: number | null;
  signal: string | null;
  /** The run sent the signal that ended it. */
  expected: boolean;
}

/**
 * One restartable process: `start` spawns it again with the same arguments (same key, state folder, database),
 * `signal` sends one, and an exit the run did not ask for is recorded in `exits`.
 */
export class Proc {
  child?: ChildProcess;
  incarnations: Incarnation[] = [];
  stopped = false;
  private killing = false;
  private readonly spawnIt: () => ChildProcess;
  readonly name: string;
  private readonly log: string;
  private readonly exits: Exit[];

  constructor(name: string, dir: string, exits: Exit[], spawnIt: () => ChildProcess) {
    this.name = name;
    this.log = join(dir, `${name}.log`);
    this.exits = exits;
    this.spawnIt = spawnIt;
  }

  get alive(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): ChildProcess {
    const child = this.spawnIt();
    this.child = child;
    this.killing = false;
    this.stopped = false;
    const inc: Incarnation = { worker: this.name, n: this.incarnations.length + 1, lines: [] };
    this.incarnations.push(inc);
    appendFileSync(this.log, `--- ${this.name} #${inc.n} started ${new Date().toISOString()}\n`);
    let partial = '';
    onOutput(child, (d) => {
      const parts = (partial + d).split('\n');
      partial = parts.pop()!; // a line cut between two chunks waits for its end
      const at = Date.now();
      for (const text of parts.filter(Boolean)) inc.lines.push({ at, text });
      if (parts.length) appendFileSync(this.log, `${parts.join('\n')}\n`);
    });
    child.once('exit', (code, signal) => {
      appendFileSync(this.log, `--- ${this.name} #${inc.n} exited: code ${code} signal ${signal}\n`);
      this.exits.push({ name: this.name, at: Date.now(), code, signal, expected: this.killing });
    });
    return child;
  }

  /** Sends `sig`; SIGKILL and SIGTERM count as the run's own stop, so the exit that follows is expected. */
  signal(sig: NodeJS.Signals): void {
    if (!this.child || !this.alive) return;
    if (sig === 'SIGKILL' || sig === 'SIGTERM' || sig === 'SIGINT') this.killing = true;
    if (sig === 'SIGSTOP') this.stopped = true;
    if (sig === 'SIGCONT') this.stopped = false;
    this.child.kill(sig);
  }

  /** Sends `sig` and resolves once the process is gone (SIGKILL after `graceMs`). */
  async stop(sig: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child || !this.alive) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    if (this.stopped) this.signal('SIGCONT');
    this.signal(sig);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }
}

/** The anvil binary on a fixed port with a state file: restarted on the same port, it reloads the chain. */
export function chainProc(dir: string, port: number, exits: Exit[]): Proc {
  return new Proc('chain', dir, exits, () =>
    spawn(
      anvilBinary(),
      [
        '--host',
        HOST,
        '--port',
        String(port),
        '--chain-id',
        String(CHAIN_ID),
        '--state',
        join(dir, 'anvil-state.json'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
}

/** Resolves once the JSON-RPC endpoint answers eth_chainId. */
export async function chainUp(rpcUrl: string, ms = 20_000): Promise<boolean> {
  return waitFor(
    async () => {
      try {
        const r = await fetch(rpcUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
        });
        return r.ok;
      } catch {
        return false;
      }
    },
    ms,
    100,
  );
}

/**
 * `npm run coordinator` on the run's database, with fixed API and relay ports (workers find it again after a
 * restart) and the run's chain given as an external one (TESSERA_RPC_URL): the run, not the coordinator, owns
 * the chain node, so each can be stopped without the other.
 */
export function coordinatorProc(
  dir: string,
  o: { port: number; relayPort: number; rpcUrl: string; heartbeatMs: number; epochSeconds: number },
  exits: Exit[],
): Proc {
  const env = {
    ...process.env,
    TESSERA_RPC_URL: o.rpcUrl,
    TESSERA_CHAIN_ID: String(CHAIN_ID),
    TESSERA_SETTLER_KEY: ANVIL_KEYS[1],
    TESSERA_DEPLOYER_KEY: ANVIL_KEYS[0],
    TESSERA_DEPLOYMENT: join(dir, 'deployment.json'),
    TESSERA_EPOCH_SECONDS: String(o.epochSeconds),
  };
  const args = [
    'src/cli/coordinator.ts',
    '--host',
    HOST,
    '--port',
    String(o.port),
    '--relay-port',
    String(o.relayPort),
    '--db',
    join(dir, 'coordinator.db'),
    '--heartbeat-ms',
    String(o.heartbeatMs),
  ];
  return new Proc('coordinator', dir, exits, () => spawnTs(args, env));
}

/** Resolves once the coordinator answers /api/health. */
export async function coordinatorUp(url: string, ms = 60_000): Promise<boolean> {
  return waitFor(
    async () => {
      try {
        return (await fetch(`${url}/api/health`)).ok;
      } catch {
        return false;
      }
    },
    ms,
    200,
  );
}

/**
 * The state-folder option of `npm run worker`, read from its --help (a worker predating durable stages has none:
 * its key's folder is then all it has).
 */
export async function workerStateFlag(): Promise<string | undefined> {
  const child = spawnTs(['src/cli/worker.ts', '--help']);
  let out = '';
  onOutput(child, (d) => (out += d));
  await new Promise((r) => child.once('exit', r));
  return /(--state[-a-z]*) <[a-z]+>/.exec(out)?.[1];
}

/** Worker `i`: its key and state in dir/w<i>/, training `model`. */
export function workerProc(
  dir: string,
  i: number,
  o: { coordinator: string; model: string; stateFlag?: string },
  exits: Exit[],
): Proc {
  const home = join(dir, `w${i}`);
  mkdirSync(home, { recursive: true });
  const args = [
    'src/cli/worker.ts',
    '--coordinator',
    o.coordinator,
    '--key',
    join(home, 'peer.key'),
    '--model',
    o.model,
    '--tokens-per-second',
    '100',
    '--timeout-ms',
    '15000',
    '--infer-runtime',
    'wgsl',
    ...(o.stateFlag ? [o.stateFlag, home] : []),
  ];
  return new Proc(`w${i}`, dir, exits, () => spawnTs(args));
}

/** The Volunteer page in headless Chromium, joined to `model`; closing and reopening keeps the tab's storage. */
export class Tab {
  private browser?: Browser;
  private context?: BrowserContext;
  page?: Page;
  readonly incarnations: Incarnation[] = [];
  private readonly app: string;
  private readonly model: string;
  private readonly key: Uint8Array;

  constructor(app: string, model: string, key: Uint8Array) {
    this.app = app;
    this.model = model;
    this.key = key;
  }

  get open(): boolean {
    return !!this.page && !this.page.isClosed();
  }

  async launch(): Promise<void> {
    const { chromium } = await import('@playwright/test');
    const { REAL_HOST_CANDIDATES } = await import('../tests/browser/helpers.ts');
    this.browser = await chromium.launch(REAL_HOST_CANDIDATES.launchOptions);
    this.context = await this.browser.newContext();
  }

  /** Opens the Volunteer page (the tab's key and model choice stored first) and clicks Join. */
  async openAndJoin(): Promise<void> {
    const { storeTabKey } = await import('../tests/browser/helpers.ts');
    const page = await this.context!.newPage();
    this.page = page;
    const inc: Incarnation = { worker: 'tab', n: this.incarnations.length + 1, lines: [] };
    this.incarnations.push(inc);
    page.on('console', (m) => inc.lines.push({ at: Date.now(), text: m.text() }));
    await page.goto(`${this.app}/`);
    await storeTabKey(page, this.key);
    await page.evaluate((model) => {
      const name = 'tessera-volunteer-settings';
      const old = JSON.parse(localStorage.getItem(name) ?? '{"state":{},"version":1}') as { state: object };
      localStorage.setItem(name, JSON.stringify({ ...old, state: { ...old.state, preferModel: model } }));
    }, this.model);
    // The settings are read when the app loads.
    await page.goto(`${this.app}/#/volunteer`);
    await page.reload();
    await page.getByRole('button', { name: 'Join the swarm' }).click({ timeout: 30_000 });
  }

  /** Steps this page has trained (0 when closed). */
  async steps(): Promise<number> {
    if (!this.open) return 0;
    return this.page!.evaluate(() => window.__tesseraVolunteer?.stepsDone ?? 0).catch(() => 0);
  }

  /** Closes the page as a volunteer closing the tab would (pagehide runs). */
  async close(): Promise<void> {
    if (this.open) await this.page!.close({ runBeforeUnload: true });
  }

  async quit(): Promise<void> {
    await this.close().catch(() => {});
    await this.browser?.close();
  }
}
