/**
 * `npm start` (after scripts/ensure.sh has installed what was missing): builds the app, then starts
 * Tessera's services in order and prints where to open it. Ctrl-C stops them in reverse order.
 *
 * Services, in order (each gets the URLs of those started before it): the chain (anvil from @foundry-rs/anvil
 * with Tessera's contracts, state in .tessera/ or TESSERA_STATE_DIR; or TESSERA_RPC_URL's, see src/chain/local.ts), the
 * coordinator (libp2p relay + HTTP API over SQLite in the same directory, registering the default model on a fresh
 * database), the app server (proxying /api to the coordinator, so the tab talks to it same-origin), and local Node
 * workers that train the default model; a tab that opens the app can join as one more peer.
 *
 * Environment: PORT (app port, default 5173; the next free port is used when it is taken),
 * TESSERA_COORDINATOR_PORT (default 8787, next free if taken), TESSERA_RELAY_PORT (the coordinator's libp2p
 * relay, default 8789, next free if taken: a fixed port and the relay key kept beside the database give the relay
 * the same address on every start, so a tab left open re-dials it and keeps its reservation), TESSERA_WORKERS
 * (local workers, default 4),
 * TESSERA_CHAIN_PORT (anvil, default 8545), TESSERA_EPOCH_SECONDS (settlement period, default 120),
 * TESSERA_NO_OPEN=1 (do not open a browser), TESSERA_STATE_DIR (where the chain, database, admin token and worker
 * keys live, default .tessera/ in the repository: a test gives each run a fresh one), TESSERA_NO_BUILD=1 (serve the
 * dist/ already built instead of building it first), TESSERA_WORKER_TOKENS_PER_SECOND (the local workers' speed,
 * passed as --tokens-per-second so they skip their measurement).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { build, preview } from 'vite';
import { coordinatorProxies } from './api-proxy.ts';
import { cli } from '../src/cli/args.ts';
import { adminToken, epochSeconds, startCoordinator } from '../src/cli/coordinator.ts';
import { DEFAULT_EPOCH_SECONDS } from '../src/cli/defaults.ts';
import { setupChain, type ChainSetup } from '../src/chain/local.ts';

const ROOT = resolve(import.meta.dirname, '..');
const HOST = '127.0.0.1';
/** Chain state, coordinator database, admin token and worker keys. */
const STATE = resolve(process.env.TESSERA_STATE_DIR || join(ROOT, '.tessera'));

interface Running {
  /** Where to reach it, if it is a server. */
  url?: string;
  stop(): Promise<void>;
}

interface Service {
  name: string;
  start(urls: Record<string, string>): Promise<Running>;
}

function log(msg: string): void {
  console.log(`[tessera] ${msg}`);
}

function requestedPort(): number {
  const raw = process.env.PORT;
  if (raw === undefined || raw === '') return 5173;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`PORT must be a port number (1–65535), not "${raw}"`);
  return port;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const probe = createServer();
    probe.once('error', () => done(false));
    probe.listen(port, HOST, () => probe.close(() => done(true)));
  });
}

async function freePort(from: number, tries = 50): Promise<number> {
  for (let port = from; port < Math.min(from + tries, 65536); port++) {
    if (await portIsFree(port)) return port;
  }
  throw new Error(`no free port on ${HOST} in ${from}–${from + tries - 1}; set PORT to another one`);
}

function envInt(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, not "${raw}"`);
  return n;
}

let chainSetup: ChainSetup | undefined;

/** The EVM chain shares settle on: a local anvil with the contracts deployed (or TESSERA_RPC_URL's chain). */
const chain: Service = {
  name: 'chain',
  async start() {
    chainSetup = await setupChain(STATE, { port: await freePort(envInt('TESSERA_CHAIN_PORT', 8545)) });
    const d = chainSetup.deployment;
    log(`chain ${d.rpcUrl} (id ${d.chainId}): registry ${d.registry}, payment token ${d.paymentToken}`);
    return { url: d.rpcUrl, stop: async () => void (await chainSetup?.anvil?.stop()) };
  },
};

/**
 * The swarm's coordinator: relay + API + SQLite (state survives restarts in .tessera/coordinator.db); settles an epoch
 * every TESSERA_EPOCH_SECONDS.
 */
const coordinator: Service = {
  name: 'coordinator',
  async start() {
    const port = await freePort(envInt('TESSERA_COORDINATOR_PORT', 8787));
    let relayPort = await freePort(envInt('TESSERA_RELAY_PORT', 8789));
    if (relayPort === port) relayPort = await freePort(port + 1);
    const coord = await startCoordinator({
      host: HOST,
      port,
      relayPort,
      dbPath: join(STATE, 'coordinator.db'),
      chain: chainSetup,
      settleEveryMs: epochSeconds() * 1000,
      adminToken: adminToken(STATE),
    });
    log(`relay at ${coord.relay?.multiaddrs.join(' ')}`);
    return { url: coord.url, stop: () => coord.stop() };
  },
};

/** Local Node volunteers (npm run worker), each with its own persisted identity; their output is prefixed. */
const workers: Service = {
  name: 'workers',
  async start(urls) {
    const n = envInt('TESSERA_WORKERS', 4);
    const speed = process.env.TESSERA_WORKER_TOKENS_PER_SECOND
      ? ['--tokens-per-second', String(envInt('TESSERA_WORKER_TOKENS_PER_SECOND', 0))]
      : [];
    const children: ChildProcess[] = [];
    for (let i = 1; i <= n; i++) {
      const child = spawn(
        process.execPath,
        [
          '--import',
          './scripts/register.ts',
          'src/cli/worker.ts',
          '--coordinator',
          urls.coordinator,
          '--key',
          join(STATE, `worker-${i}.key`),
          ...speed,
        ],
        {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const prefix = (d: Buffer) => {
        for (const line of String(d).split('\n'))
          if (line.trim() && !line.startsWith('Warning: max')) console.log(`[worker-${i}] ${line}`);
      };
      child.stdout!.on('data', prefix);
      child.stderr!.on('data', prefix);
      children.push(child);
    }
    if (n) log(`started ${n} local worker(s); they measure their speed, then join (about a minute on a CPU adapter)`);
    return {
      stop: async () => {
        await Promise.all(
          children.map(
            (c) =>
              new Promise<void>((done) => {
                if (c.exitCode !== null) return done();
                c.once('exit', () => done());
                c.kill('SIGTERM');
                setTimeout(() => c.kill('SIGKILL'), 5000).unref();
              }),
          ),
        );
      },
    };
  },
};

/** The built app (dist/) with the same cross-origin isolation headers as in development (vite.config.ts). */
const appServer: Service = {
  name: 'app',
  async start(urls) {
    const wanted = requestedPort();
    const port = await freePort(wanted);
    if (port !== wanted) log(`port ${wanted} is busy; using ${port}`);
    const server = await preview({
      root: ROOT,
      logLevel: 'warn',
      preview: {
        host: HOST,
        port,
        strictPort: true,
        open: false,
        proxy: urls.coordinator ? coordinatorProxies(urls.coordinator) : undefined,
      },
    });
    return {
      url: `http://${HOST}:${port}/`,
      stop: () => server.close(),
    };
  },
};

const SERVICES: Service[] = [chain, coordinator, appServer, workers];

async function buildApp(): Promise<void> {
  log('building the app…');
  const t0 = performance.now();
  await build({ root: ROOT, logLevel: 'warn' });
  log(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

function banner(url: string): void {
  const lines = ['Tessera is running. Open:', '', `    ${url}`, '', 'Press Ctrl-C to stop.'];
  const width = Math.max(...lines.map((l) => l.length)) + 4;
  const bold = process.stdout.isTTY ? (s: string) => `\x1b[1m${s}\x1b[0m` : (s: string) => s;
  console.log(`\n  ┌${'─'.repeat(width)}┐`);
  for (const l of lines) console.log(`  │  ${l === `    ${url}` ? bold(l) : l}${' '.repeat(width - l.length - 2)}│`);
  console.log(`  └${'─'.repeat(width)}┘\n`);
}

/** Opens the URL in the desktop's browser when there is a desktop; on a headless machine just prints it. */
function openBrowser(url: string): void {
  if (process.env.TESSERA_NO_OPEN === '1') return;
  const opener =
    process.platform === 'darwin'
      ? 'open'
      : process.env.DISPLAY || process.env.WAYLAND_DISPLAY
        ? 'xdg-open'
        : undefined;
  if (!opener) return;
  try {
    const child = spawn(opener, [url], { detached: true, stdio: 'ignore' });
    child.on('error', () => log(`could not run ${opener}; open ${url} yourself`));
    child.unref();
  } catch {
    // Printing the URL is enough.
  }
}

async function main(): Promise<void> {
  const running: Array<{ name: string; service: Running }> = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) {
      log('forced exit');
      process.exit(1);
    }
    stopping = true;
    for (const { name, service } of running.reverse()) {
      try {
        await service.stop();
      } catch (e) {
        log(`stopping ${name} failed: ${(e as Error).message}`);
      }
    }
    process.exit(code);
  };
  process.on('SIGINT', () => {
    console.log();
    log('stopping…');
    void stopAll(0);
  });
  process.on('SIGTERM', () => void stopAll(0));

  try {
    if (process.env.TESSERA_NO_BUILD === '1') log('serving the dist/ already built (TESSERA_NO_BUILD=1)');
    else await buildApp();
    const urls: Record<string, string> = {};
    for (const s of SERVICES) {
      const service = await s.start(urls);
      running.push({ name: s.name, service });
      if (service.url) {
        urls[s.name] = service.url;
        log(`${s.name} at ${service.url}`);
      }
    }
  } catch (e) {
    console.error(`[tessera] start failed: ${(e as Error).message}`);
    await stopAll(1);
    return;
  }
  banner(running.find((r) => r.name === 'app')?.service.url ?? '');
  openBrowser(running.find((r) => r.name === 'app')?.service.url ?? '');
}

// No options: everything is set through the environment, which --help lists; anything else is a usage error.
cli({
  name: 'start',
  usage: 'npm start [-- --help]',
  description:
    'Builds the app, then starts the chain (anvil), the coordinator, the app server and local workers training ' +
    'the default model, and prints where to open it. Ctrl-C stops them in reverse order.',
  after: `Environment:
  PORT                              app port (default 5173; the next free one when taken)
  TESSERA_COORDINATOR_PORT          coordinator port (default 8787; the next free one when taken)
  TESSERA_RELAY_PORT                relay port (default 8789; the next free one when taken)
  TESSERA_WORKERS                   local workers (default 4)
  TESSERA_CHAIN_PORT                anvil port (default 8545)
  TESSERA_EPOCH_SECONDS             settlement period (default ${DEFAULT_EPOCH_SECONDS})
  TESSERA_STATE_DIR                 chain, database, admin token and worker keys (default .tessera/)
  TESSERA_NO_OPEN=1                 do not open a browser
  TESSERA_NO_BUILD=1                serve the dist/ already built instead of building it first
  TESSERA_WORKER_TOKENS_PER_SECOND  the local workers' speed (skips their measurement)
  TESSERA_RPC_URL, TESSERA_CHAIN_ID, TESSERA_SETTLER_KEY, TESSERA_DEPLOYMENT, TESSERA_DEPLOYER_KEY
                                    use another EVM chain instead of a local anvil (src/chain/local.ts)`,
}).parse();
await main();
