/**
 * `npm run coordinator`: the swarm's coordinator — a libp2p relay (WebSockets on 127.0.0.1; peers signal
 * WebRTC through it) and the HTTP/JSON API over SQLite (src/coordinator/API.md). On a fresh database it
 * registers the default model (the software-adapter training recipe) so workers have something to train.
 *
 *   npm run coordinator -- --port 8787 --db .tessera/coordinator.db
 */
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Coordinator } from '../coordinator/index.ts';
import { createRelay } from '../net/node.ts';
import { defaultRecipe, recipeModel } from '../train/recipe.ts';

export const DEFAULT_MODEL_ID = 'brown-tiny';

export async function startCoordinator(o: {
  host?: string; port?: number; relayPort?: number; dbPath: string; heartbeatMs?: number; corsOrigins?: string[]; registerDefault?: boolean;
}): Promise<Coordinator> {
  if (o.dbPath !== ':memory:') mkdirSync(dirname(o.dbPath), { recursive: true });
  const relay = await createRelay({ host: o.host ?? '127.0.0.1', port: o.relayPort ?? 0 });
  const coord = await Coordinator.start({
    dbPath: o.dbPath, host: o.host, port: o.port ?? 0, heartbeatMs: o.heartbeatMs, corsOrigins: o.corsOrigins,
    relay: { multiaddrs: relay.getMultiaddrs().map((m) => m.toString()), stop: () => relay.stop() },
  });
  if ((o.registerDefault ?? true) && coord.store.listModels().length === 0) {
    const r = defaultRecipe(true);
    const res = await fetch(`${coord.url}/api/models`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: DEFAULT_MODEL_ID, name: 'Brown tiny (4 stages)', config: recipeModel(r), layout: Array(r.stages).fill(r.blocks),
        codec: r.codec, microBatches: r.micro, batch: r.batch, pricePer1kTokens: 0.01,
      }),
    });
    if (!res.ok) throw new Error(`registering the default model failed: ${await res.text()}`);
  }
  return coord;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { host: { type: 'string' }, port: { type: 'string' }, 'relay-port': { type: 'string' }, db: { type: 'string' }, 'heartbeat-ms': { type: 'string' } },
  });
  const coord = await startCoordinator({
    host: values.host, port: Number(values.port ?? 8787), relayPort: Number(values['relay-port'] ?? 0),
    dbPath: resolve(values.db ?? '.tessera/coordinator.db'), heartbeatMs: values['heartbeat-ms'] ? Number(values['heartbeat-ms']) : undefined, corsOrigins: ['*'],
  });
  console.log(`[coordinator] API ${coord.url}  relay ${coord.relay?.multiaddrs.join(' ')}`);
  const stop = async () => {
    await coord.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (import.meta.main) await main();
