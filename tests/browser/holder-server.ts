/**
 * Test stack for tests/browser/holder.spec.ts, run as its own process (the coordinator imports model code
 * with WGSL, so it needs `node --import ./scripts/register.ts`):
 *
 *   node --import ./scripts/register.ts tests/browser/holder-server.ts --db <file> --tab-key <file>
 *
 * A real anvil with Tessera deployed, a coordinator linked to it (settlement key, registry owner, admin token),
 * one 2-stage model registered on both, and verified-looking work already receipted for two peers: the tab's
 * (its libp2p key is read from --tab-key; the spec stores the same key in the tab's IndexedDB) on one stage and
 * another peer, bound to anvil account 3, on the other. The tab links its own peer through the page; the spec
 * closes the epoch. Serves the built app (dist/) with /api proxied to the coordinator, as `npm start` does.
 * Prints one line `READY {…}`; stops on SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { generateKeyPair, privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { privateKeyToAccount } from 'viem/accounts';
import { preview } from 'vite';
import { coordinatorProxies } from '../../scripts/api-proxy.ts';
import { ANVIL_KEYS, startAnvil } from '../../src/chain/anvil.ts';
import { deployTessera } from '../../src/chain/deploy.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { bindingTypedData, signBindingAsPeer } from '../../src/ledger/binding.ts';
import { receiptFlops } from '../../src/ledger/flops.ts';
import { signReceipt, type WorkReceipt } from '../../src/ledger/receipt.ts';
import { splitStages } from '../../src/model/stages.ts';
import { freePort } from './free-port.ts';

export const HOLDER_MODEL = {
  id: 'holder-test',
  name: 'holder test (2 stages)',
  config: { vocab: 32, dModel: 16, heads: 2, layers: 4, context: 8 },
  layout: [2, 2],
  codec: 'none',
  microBatches: 2,
  batch: 2,
  pricePer1kTokens: 0,
};
export const ADMIN_TOKEN = 'holder-test-admin';
/** Seconds between a root's posting and its claims (the spec moves anvil's clock past it). */
export const CHALLENGE_DELAY = 600;

export interface HolderFixture {
  app: string;
  coordinator: string;
  rpcUrl: string;
  chainId: number;
  modelId: string;
  adminToken: string;
  challengeDelay: number;
  tabPeerId: string;
  otherPeerId: string;
  otherWallet: string;
}

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

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { db: { type: 'string' }, 'tab-key': { type: 'string' } } });
  if (!values.db || !values['tab-key']) throw new Error('--db <file> and --tab-key <file> are required');
  const tabKey = privateKeyFromProtobuf(readFileSync(values['tab-key']));

  const anvil = await startAnvil();
  const deployment = await deployTessera({
    rpcUrl: anvil.rpcUrl,
    chainId: anvil.chainId,
    deployerKey: ANVIL_KEYS[0],
    settlerAddress: privateKeyToAccount(ANVIL_KEYS[1]).address,
    challengeDelaySeconds: CHALLENGE_DELAY,
  });
  const coord = await Coordinator.start({
    dbPath: values.db,
    heartbeatMs: 600_000,
    adminToken: ADMIN_TOKEN,
    chain: { deployment, settlerKey: ANVIL_KEYS[1], ownerKey: ANVIL_KEYS[0] },
  });
  const api = coord.url;
  const m = HOLDER_MODEL;
  await call(api, 'POST', '/api/models', m);
  // The coordinator registers the model on chain in the background; the page needs its addresses.
  for (let i = 0; !(await call(api, 'GET', '/api/chain')).chain.models[m.id]; i++) {
    if (i > 100) throw new Error(`model ${m.id} never appeared on chain`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const peers: Array<{ key: PrivateKey; id: string; stage: number }> = [];
  for (const key of [tabKey, await generateKeyPair('Ed25519')]) {
    const id = peerIdFromPrivateKey(key).toString();
    const joined = await call(api, 'POST', '/api/peers/join', { peerId: id, kind: 'node', tokensPerSecond: 100 });
    peers.push({ key, id, stage: joined.assignment.stage });
  }
  const [tab, other] = peers;
  if (new Set(peers.map((p) => p.stage)).size !== 2) throw new Error(`both peers got stage ${tab.stage}`);

  // The other peer's wallet links in Node; the tab's is left to the page.
  const otherWallet = privateKeyToAccount(ANVIL_KEYS[3]);
  const expiry = BigInt(Math.floor(Date.now() / 1000) + 600);
  const msg = { peerId: other.id, wallet: otherWallet.address, nonce: 1n, expiry };
  await call(api, 'POST', '/api/bindings', {
    peerId: other.id,
    wallet: otherWallet.address,
    nonce: '1',
    expiry: String(expiry),
    walletSignature: await otherWallet.signTypedData(bindingTypedData(anvil.chainId, msg)),
    peerSignature: await signBindingAsPeer(other.key, anvil.chainId, msg),
  });

  // Steps 0–2 recorded; steps 0 and 1 receipted by both stages with hashes that chain (stage 0's output is
  // stage 1's input), so the epoch's verdict credits both peers.
  for (let step = 0; step < 3; step++)
    await call(api, 'POST', `/api/models/${m.id}/metrics`, { step, loss: 3 - step / 10 });
  const specs = splitStages(m.config, 2, m.layout);
  const H = (c: string) => '0x' + c.repeat(64);
  const receipts = [];
  for (const p of peers) {
    for (const step of [0, 1]) {
      for (const micro of [0, 1]) {
        const link = H(((step * 2 + micro) % 10).toString());
        const r: WorkReceipt = {
          model: m.id,
          round: 1,
          stage: p.stage,
          replica: 0,
          replicas: 1,
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

  const port = await freePort();
  const server = await preview({
    root: new URL('../../', import.meta.url).pathname,
    logLevel: 'warn',
    preview: { host: '127.0.0.1', port, strictPort: true, open: false, proxy: coordinatorProxies(api) },
  });
  // The chain first: the spec SIGKILLs this process if stopping takes over 5 s, and anvil must not outlive it.
  const stop = async () => {
    await anvil.stop();
    await Promise.race([Promise.all([server.close(), coord.stop()]), new Promise((r) => setTimeout(r, 3000))]);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  const fx: HolderFixture = {
    app: `http://127.0.0.1:${port}`,
    coordinator: api,
    rpcUrl: anvil.rpcUrl,
    chainId: anvil.chainId,
    modelId: m.id,
    adminToken: ADMIN_TOKEN,
    challengeDelay: CHALLENGE_DELAY,
    tabPeerId: tab.id,
    otherPeerId: other.id,
    otherWallet: otherWallet.address,
  };
  console.log(`READY ${JSON.stringify(fx)}`);
}

await main();
