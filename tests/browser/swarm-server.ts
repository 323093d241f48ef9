/**
 * Test fixture for tests/browser/volunteer.spec.ts, run as its own process (the coordinator validates configs
 * with model code that imports WGSL, so it needs `node --import ./scripts/register.ts`):
 *
 *   node --import ./scripts/register.ts tests/browser/swarm-server.ts --db <file>
 *
 * Starts a coordinator (relay + API, no default model), registers one tiny 2-stage model, warms the corpus
 * cache the tab will fetch, and serves the built app (dist/) with /api proxied to the coordinator, as
 * `npm start` does. Prints one line `READY {"coordinator": …, "app": …, "modelId": …}`; stops on SIGTERM.
 */
import { parseArgs } from 'node:util';
import { preview } from 'vite';
import { coordinatorProxies } from '../../scripts/api-proxy.ts';
import { startCoordinator } from '../../src/cli/coordinator.ts';
import { freePort } from './free-port.ts';

export const SWARM_MODEL = {
  id: 'volunteer-test',
  name: 'volunteer test (2 stages)',
  config: { vocab: 1024, dModel: 32, heads: 2, layers: 2, context: 32, seed: 1 },
  layout: [1, 1],
  codec: 'none',
  microBatches: 2,
  batch: 1,
  pricePer1kTokens: 0,
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { db: { type: 'string' } } });
  if (!values.db) throw new Error('--db <file> is required');
  const coord = await startCoordinator({ dbPath: values.db, registerDefault: false });
  const res = await fetch(`${coord.url}/api/models`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(SWARM_MODEL),
  });
  if (res.status !== 201) throw new Error(`registering the test model failed: ${res.status} ${await res.text()}`);
  for (const part of ['tokenizer.json', 'train', 'val'])
    await (await fetch(`${coord.url}/api/data/brown/1024/${part}`)).arrayBuffer();
  const port = await freePort();
  const server = await preview({
    root: new URL('../../', import.meta.url).pathname,
    logLevel: 'warn',
    preview: { host: '127.0.0.1', port, strictPort: true, open: false, proxy: coordinatorProxies(coord.url) },
  });
  const stop = async () => {
    await server.close();
    await coord.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  console.log(
    `READY ${JSON.stringify({ coordinator: coord.url, app: `http://127.0.0.1:${port}`, modelId: SWARM_MODEL.id })}`,
  );
}

await main();
