/**
 * Test stack for tests/browser/researcher.spec.ts, run as its own process (the coordinator imports model code
 * with WGSL, so it needs `node --import ./scripts/register.ts`):
 *
 *   node --import ./scripts/register.ts tests/browser/researcher-server.ts --db <file> [--chain]
 *
 * A real coordinator (no chain) with one 2-stage model held by three peers (a replica on one stage) with real
 * Ed25519 keys: 20 recorded steps with training loss and a validation loss every 5, two rounds of heartbeats
 * reporting link counters (so links have rates), signed receipts for two steps (pending credit on the
 * leaderboards), and a team one peer joined with its key. Serves the built app (dist/) with /api and /v1
 * proxied to the coordinator, as `npm start` does. Prints one line `READY {…}`; stops on SIGTERM.
 *
 * With --chain: also a real anvil with Tessera deployed (the inference escrow included), the coordinator settling
 * on it, and paid inference served by a stand-in generator (STAND_IN_TOKENS, one every 40 ms) — this stack tests
 * the prompt box (signing, payment, streaming); generation by stage holders is tested in tests/infer.
 */
import { parseArgs } from 'node:util';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { preview } from 'vite';
import { coordinatorProxies } from '../../scripts/api-proxy.ts';
import { signTeamJoin } from '../../src/app/volunteer/teams.ts';
import { privateKeyToAccount } from 'viem/accounts';
import { ANVIL_KEYS, startAnvil, type Anvil } from '../../src/chain/anvil.ts';
import { deployTessera } from '../../src/chain/deploy.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import type { InferenceBackend } from '../../src/infer/backend.ts';
import { receiptFlops } from '../../src/ledger/flops.ts';
import { signReceipt, type WorkReceipt } from '../../src/ledger/receipt.ts';
import { splitStages } from '../../src/model/stages.ts';
import { freePort } from './free-port.ts';
import { RESEARCH_MODEL, STAND_IN_TOKENS, STEPS, TEAM_NAME, type ResearchFixture } from './researcher-fixture.ts';

async function call(base: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Emits STAND_IN_TOKENS in order, one every 40 ms (so the page visibly streams), up to max tokens. */
const standIn: InferenceBackend = {
  async generate(req, onToken) {
    const tokens: number[] = [];
    for (const t of STAND_IN_TOKENS.slice(0, req.maxTokens)) {
      await sleep(40);
      if (req.signal.aborted) break;
      tokens.push(t);
      if (onToken(t)) return { tokens, finish: 'stop' };
    }
    return { tokens, finish: 'length' };
  },
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { db: { type: 'string' }, chain: { type: 'boolean' } } });
  if (!values.db) throw new Error('--db <file> is required');
  let anvil: Anvil | undefined;
  let chain;
  if (values.chain) {
    anvil = await startAnvil();
    const deployment = await deployTessera({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      deployerKey: ANVIL_KEYS[0],
      settlerAddress: privateKeyToAccount(ANVIL_KEYS[1]).address,
      challengeDelaySeconds: 600,
    });
    chain = { deployment, settlerKey: ANVIL_KEYS[1], ownerKey: ANVIL_KEYS[0] };
  }
  const coord = await Coordinator.start({
    dbPath: values.db,
    heartbeatMs: 600_000,
    ...(chain ? { chain, inference: standIn } : {}),
  });
  const api = coord.url;
  const m = RESEARCH_MODEL;
  await call(api, 'POST', '/api/models', m);

  const peers: Array<{ key: PrivateKey; id: string; stage: number; replica: number }> = [];
  for (const [i, kind] of (['node', 'browser', 'node'] as const).entries()) {
    const key = await generateKeyPair('Ed25519');
    const id = peerIdFromPrivateKey(key).toString();
    const a = await call(api, 'POST', '/api/peers/join', { peerId: id, kind, tokensPerSecond: 80 + 20 * i });
    if (a.status !== 'assigned') throw new Error(`peer ${i} was not placed: ${a.reason}`);
    peers.push({ key, id, stage: a.assignment.stage, replica: a.assignment.replica });
  }
  // Later joins may move earlier peers (rebalance): read where everyone ended up.
  const topo = await call(api, 'GET', `/api/models/${m.id}/topology`);
  for (const s of topo.stages) {
    for (const q of s.peers) {
      const p = peers.find((x) => x.id === q.peerId)!;
      p.stage = s.index;
      p.replica = q.replica;
    }
  }
  const replicas = (stage: number) => peers.filter((q) => q.stage === stage).length;

  // Steps with a duration (running, then done) so throughput has points; loss falls; validation every 5 steps.
  for (let step = 0; step < STEPS; step++) {
    await call(api, 'POST', `/api/models/${m.id}/metrics`, { step, status: 'running' });
    await sleep(15);
    await call(api, 'POST', `/api/models/${m.id}/metrics`, {
      step,
      loss: 6.9 - step * 0.12,
      tokens: m.microBatches * m.batch * m.config.context,
    });
    if (step % 5 === 4)
      await call(api, 'POST', `/api/models/${m.id}/metrics`, { step, loss: 7 - step * 0.1, kind: 'val' });
  }

  // Two heartbeats per peer, a second apart, with growing counters to every other peer: rates and RTTs.
  for (const round of [1, 2]) {
    for (const p of peers) {
      const links = peers
        .filter((q) => q !== p)
        .map((q) => ({ peerId: q.id, bytesSent: round * 200_000, bytesReceived: round * 150_000, rttMs: 8 + round }));
      await call(api, 'POST', '/api/peers/heartbeat', { peerId: p.id, links });
    }
    if (round === 1) await sleep(1100);
  }

  // Receipts for steps 0–1, each replica its share of the micro-batches, hashes chaining stage 0's output to
  // stage 1's input.
  const specs = splitStages(m.config, m.layout.length, m.layout);
  const H = (c: string) => '0x' + c.repeat(64);
  const receipts = [];
  for (const p of peers) {
    for (const step of [0, 1]) {
      for (let micro = p.replica; micro < m.microBatches; micro += replicas(p.stage)) {
        const link = H(((step * 2 + micro) % 10).toString());
        const r: WorkReceipt = {
          model: m.id,
          round: 1,
          stage: p.stage,
          replica: p.replica,
          replicas: replicas(p.stage),
          step,
          micro,
          kind: 'train',
          flops: receiptFlops(m.config, specs[p.stage], m.batch, m.config.context, 'train'),
          inputHash: p.stage === 0 ? H('0') : link,
          outputHash: p.stage === 0 ? link : H('f'),
          peerId: p.id,
        };
        receipts.push(await signReceipt(p.key, r));
      }
    }
  }
  const stored = await call(api, 'POST', `/api/models/${m.id}/receipts`, { receipts });
  if (stored.accepted !== receipts.length) throw new Error(`receipts refused: ${JSON.stringify(stored.rejected)}`);

  const team = await call(api, 'POST', '/api/teams', { name: TEAM_NAME });
  await call(api, 'POST', `/api/teams/${team.id}/members`, await signTeamJoin(peers[0].key, peers[0].id, team.id));

  const port = await freePort();
  const server = await preview({
    root: new URL('../../', import.meta.url).pathname,
    logLevel: 'warn',
    preview: {
      host: '127.0.0.1',
      port,
      strictPort: true,
      open: false,
      proxy: coordinatorProxies(api),
    },
  });
  // The chain first: the spec SIGKILLs this process if stopping takes over 5 s, and anvil must not outlive it.
  const stop = async () => {
    await anvil?.stop();
    await Promise.race([Promise.all([server.close(), coord.stop()]), new Promise((r) => setTimeout(r, 3000))]);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  const fx: ResearchFixture = {
    app: `http://127.0.0.1:${port}`,
    coordinator: api,
    modelId: m.id,
    peers: peers.map(({ id, stage, replica }) => ({ id, stage, replica })),
    teamId: team.id,
    rpcUrl: anvil?.rpcUrl,
    chainId: anvil?.chainId,
  };
  console.log(`READY ${JSON.stringify(fx)}`);
}

await main();
