/**
 * `npm run coordinator`: the swarm's coordinator — a libp2p relay (WebSockets on 127.0.0.1; peers signal
 * WebRTC through it) and the HTTP/JSON API over SQLite (src/coordinator/API.md). On a fresh database it
 * registers the default model (the software-adapter training recipe) so workers have something to train.
 *
 *   npm run coordinator -- --port 8787 --db .tessera/coordinator.db
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setupChain, type ChainSetup } from '../chain/local.ts';
import { SwarmInference, type ServingPlan } from '../infer/swarm-backend.ts';
import { stageIncrementalFlops } from '../model/flops.ts';
import { Coordinator, type RateLimits } from '../coordinator/index.ts';
import { loadOrCreateKey } from '../net/identity-node.ts';
import { createRelay } from '../net/node.ts';
import { cli, nonEmpty, port, positiveInt } from './args.ts';
import { DEFAULT_EPOCH_SECONDS, DEFAULT_MODEL_ID } from './defaults.ts';
import { stageSpecs } from '../train/run-derived.ts';
import { presetSpec } from '../train/run-spec.ts';

export { DEFAULT_EPOCH_SECONDS, DEFAULT_MODEL_ID };

/**
 * The admin token of `dir` (created once, mode 0600): what `npm run settle` presents to close an epoch.
 */
export function adminToken(dir: string): string {
  const path = join(dir, 'admin-token');
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path, randomBytes(24).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  }
  return readFileSync(path, 'utf8').trim();
}

/** Who serves each stage of a model now (alive holders, replica order) and what a hop computes. */
export function servingPlan(coord: Coordinator, modelId: string): ServingPlan | null {
  const m = coord.store.getModel(modelId);
  if (!m) return null;
  const alive = new Set(coord.store.listPeers('alive').map((p) => p.peerId));
  const held = coord.store
    .listAssignments(modelId)
    .filter((a) => alive.has(a.peerId))
    .sort((a, b) => a.replica - b.replica);
  const stages: string[][] = m.spec.layout.map(() => []);
  for (const a of held) stages[a.stage].push(a.peerId);
  const specs = stageSpecs(m.spec);
  return {
    dModel: m.spec.model.dModel,
    stages,
    hopFlops: (stage, t, past) => stageIncrementalFlops(m.spec.model, specs[stage], t, past, 1),
  };
}

/** Where the relay's private key is kept for the database at `dbPath` (created on first use, mode 0600). */
export function relayKeyPath(dbPath: string): string {
  return `${dbPath}.relay.key`;
}

export async function startCoordinator(o: {
  host?: string;
  port?: number;
  relayPort?: number;
  dbPath: string;
  heartbeatMs?: number;
  /** Browser origins allowed to write and read cross-origin (none by default: the app proxies /api same-origin). */
  allowedOrigins?: string[];
  /** More Host names the API answers to, besides the listen address's. */
  allowedHosts?: string[];
  rateLimits?: Partial<RateLimits>;
  registerDefault?: boolean;
  chain?: ChainSetup;
  settleEveryMs?: number;
  adminToken?: string;
  banAfter?: number;
  /** Share of generations whose hops are replayed on a replica (default 0.1). */
  inferenceAuditFraction?: number;
}): Promise<Coordinator> {
  if (o.dbPath !== ':memory:') mkdirSync(dirname(o.dbPath), { recursive: true });
  // The relay's identity lives beside the database: a restarted coordinator (same database, same relay port) is
  // the same relay multiaddr, which its peers re-dial to win their reservations back (keepReservation in
  // net/node.ts); a new peer id there would leave every peer that was online unreachable to newcomers.
  const privateKey = o.dbPath === ':memory:' ? undefined : await loadOrCreateKey(relayKeyPath(o.dbPath));
  const relay = await createRelay({ host: o.host ?? '127.0.0.1', port: o.relayPort ?? 0, privateKey });
  const coord = await Coordinator.start({
    dbPath: o.dbPath,
    host: o.host,
    port: o.port ?? 0,
    heartbeatMs: o.heartbeatMs,
    allowedOrigins: o.allowedOrigins,
    allowedHosts: o.allowedHosts,
    rateLimits: o.rateLimits,
    relay: { multiaddrs: relay.getMultiaddrs().map((m) => m.toString()), stop: () => relay.stop() },
    chain: o.chain && {
      deployment: o.chain.deployment,
      settlerKey: o.chain.settlerKey,
      ownerKey: o.chain.ownerKey,
      deploymentPath: o.chain.deploymentPath,
    },
    settleEveryMs: o.settleEveryMs,
    adminToken: o.adminToken,
    banAfter: o.banAfter,
  });
  // Inference requests walk through the stage holders over the relay's connections to them; each hop's receipt
  // goes into the ledger like training work (a tenth of generations also replayed on a replica: audits).
  const swarm = new SwarmInference({
    node: relay,
    log: (l) => console.log(`[coordinator] ${l}`),
    auditFraction: o.inferenceAuditFraction,
    holders: (modelId) => servingPlan(coord, modelId),
    onReceipt: async (modelId, receipt, flops) => {
      await coord.ledger.recordInference(modelId, receipt, flops);
    },
  });
  coord.setInferenceBackend(swarm);
  // Validation loss through the same holders: one forward per held-out sequence, averaged.
  coord.setEvaluator(async (modelId, ids, targets, signal) => {
    const T = coord.store.getModel(modelId)?.spec.model.context ?? ids.length;
    let total = 0;
    const rows = Math.ceil(ids.length / T);
    for (let r = 0; r < rows; r++)
      total += await swarm.evaluate(
        modelId,
        ids.subarray(r * T, (r + 1) * T),
        targets.subarray(r * T, (r + 1) * T),
        signal,
      );
    return total / rows;
  });
  if ((o.registerDefault ?? true) && coord.store.listModels().length === 0) {
    const res = await fetch(`${coord.url}/api/models`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // The software preset: what a CPU-only worker trains within minutes.
      body: JSON.stringify({ id: DEFAULT_MODEL_ID, name: 'Brown tiny (4 stages)', spec: presetSpec(true) }),
    });
    if (!res.ok) throw new Error(`registering the default model failed: ${await res.text()}`);
  }
  return coord;
}

interface CoordinatorCli {
  host: string;
  port: number;
  relayPort: number;
  db: string;
  heartbeatMs?: number;
  chain: boolean;
  allowedHost: string[];
  allowOrigin: string[];
}

/** Comma-separated values, from repeated options and the environment variable alike. */
const collect = (raw: string, prev: string[] = []) => [...prev, ...list(raw)];
const list = (raw: string | undefined) =>
  (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

function parseCli(argv: string[]): CoordinatorCli {
  return cli({
    name: 'coordinator',
    usage: 'npm run coordinator -- [options]',
    description:
      "The swarm's coordinator: a libp2p relay (peers signal WebRTC through it) and the HTTP/JSON API " +
      'over SQLite. On a fresh database it registers the default model.',
    after: `Environment:
  TESSERA_EPOCH_SECONDS    close an epoch this often (default ${DEFAULT_EPOCH_SECONDS})
  TESSERA_ALLOWED_HOSTS    more Host names, comma-separated (as --allowed-host)
  TESSERA_ALLOWED_ORIGINS  browser origins allowed to call the API, comma-separated (as --allow-origin)

The admin token npm run settle presents is written next to the database (admin-token), the relay's key
beside the database (<db>.relay.key): the same database and relay port give the same relay address.`,
  })
    .option('--host <address>', 'address the API and the relay listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP API port (0 = any free one)', port, 8787)
    .option(
      '--relay-port <port>',
      'relay (WebSockets) port (0 = any free one; give a fixed one so peers find the relay again after a restart)',
      port,
      0,
    )
    .option(
      '--db <path>',
      'SQLite database; chain state and admin token live beside it',
      nonEmpty,
      '.tessera/coordinator.db',
    )
    .option(
      '--heartbeat-ms <ms>',
      "workers' heartbeat period; a peer is gone after 3 missed beats (default: 2000)",
      positiveInt,
    )
    .option('--no-chain', 'run without an EVM chain: epochs settle, but no root is posted')
    .option(
      '--allowed-host <host[:port]>',
      "a Host name the API answers to besides the listen address's (a reverse proxy's name); repeatable",
      collect,
      list(process.env.TESSERA_ALLOWED_HOSTS),
    )
    .option(
      '--allow-origin <origin>',
      'a browser origin (http://host:port) allowed to call the API cross-origin; repeatable; none by default ' +
        '(the app proxies /api, same-origin)',
      collect,
      list(process.env.TESSERA_ALLOWED_ORIGINS),
    )
    .parse(argv)
    .opts<CoordinatorCli>();
}

async function main(): Promise<void> {
  const values = parseCli(process.argv);
  const dbPath = resolve(values.db);
  const dir = dirname(dbPath);
  const chain = values.chain ? await setupChain(dir) : undefined;
  const coord = await startCoordinator({
    host: values.host,
    port: values.port,
    relayPort: values.relayPort,
    dbPath,
    heartbeatMs: values.heartbeatMs,
    allowedHosts: values.allowedHost,
    allowedOrigins: values.allowOrigin,
    chain,
    settleEveryMs: epochSeconds() * 1000,
    adminToken: adminToken(dir),
  });
  const chainText = chain ? `  chain ${chain.deployment.rpcUrl} (id ${chain.deployment.chainId})` : '';
  console.log(`[coordinator] API ${coord.url}  relay ${coord.relay?.multiaddrs.join(' ')}${chainText}`);
  const stop = async () => {
    await coord.stop();
    await chain?.anvil?.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

export function epochSeconds(): number {
  const raw = process.env.TESSERA_EPOCH_SECONDS;
  const n = raw ? Number(raw) : DEFAULT_EPOCH_SECONDS;
  if (!Number.isFinite(n) || n <= 0) throw new Error(`TESSERA_EPOCH_SECONDS must be a positive number, not "${raw}"`);
  return n;
}

if (import.meta.main) await main();
