/**
 * `npm run worker`: a headless Node volunteer. It measures its speed, joins the coordinator, gets one stage
 * of one model, connects to the other stage holders over direct WebRTC (signalled through the coordinator's
 * relay) and trains its stage on the local WebGPU device (Dawn; lavapipe without a GPU).
 *
 *   npm run worker -- --coordinator http://127.0.0.1:8787 --key .tessera/worker-1.key
 *
 * Options: --steps N (stop after N steps of this worker), --until-step N (stop once the model stands at step N:
 * every worker given the same N stops together), --tokens-per-second (skip the measurement), --timeout-ms (a
 * silent neighbour fails the step after this long), --crash-after-update N (fault injection for tests: the
 * process SIGKILLs itself the moment it has applied step N's update, before reporting it). The worker rides out
 * pipeline changes (peers vanishing, joining or moving): see src/net/swarm-worker.ts.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadCorpus } from '../data/brown-node.ts';
import { Gpu } from '../gpu/index.ts';
import { CoordinatorClient } from '../net/coordinator-client.ts';
import { loadOrCreateKey } from '../net/identity-node.ts';
import { createPeer, waitForRelayAddress } from '../net/node.ts';
import { SwarmWorker } from '../net/swarm-worker.ts';
import { formatBytes } from '../train/progress.ts';
import { measureThroughput } from '../train/throughput.ts';

const { values } = parseArgs({
  options: {
    coordinator: { type: 'string' }, key: { type: 'string' }, steps: { type: 'string' }, 'until-step': { type: 'string' }, 'tokens-per-second': { type: 'string' }, 'timeout-ms': { type: 'string' },
    'crash-after-update': { type: 'string' },
  },
});
/** A non-negative integer option, or undefined when absent. */
function count(name: 'steps' | 'until-step' | 'tokens-per-second' | 'timeout-ms' | 'crash-after-update'): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, not "${raw}"`);
  return n;
}
const maxSteps = count('steps');
const untilStep = count('until-step');
const timeoutMs = count('timeout-ms');
const givenSpeed = count('tokens-per-second');
const crashAfter = count('crash-after-update');
const client = new CoordinatorClient(values.coordinator ?? 'http://127.0.0.1:8787');
const health = await client.health();
const relayAddr = health.relay?.multiaddrs[0];
if (!relayAddr) throw new Error(`the coordinator at ${client.url} runs no relay`);
const gpu = await Gpu.create();
const privateKey = await loadOrCreateKey(resolve(values.key ?? '.tessera/worker.key'));
const node = await createPeer({ relayAddr, privateKey });
await waitForRelayAddress(node);
const say = (s: string) => console.log(s);
const tokensPerSecond = givenSpeed ?? (await measureThroughput(gpu));
say(`[worker ${node.peerId.toString().slice(-6)}] ${gpu.adapter.description || gpu.adapter.vendor} · ${tokensPerSecond.toFixed(0)} reference tokens/s · relay ${relayAddr}`);
const worker = new SwarmWorker({
  gpu, node, client, relayAddr, kind: 'node', tokensPerSecond,
  loadCorpus,
  maxSteps, untilStep, timeoutMs,
  onUpdateApplied: (step) => {
    if (step !== crashAfter) return;
    console.log(`[worker ${node.peerId.toString().slice(-6)}] --crash-after-update ${step}: killing this process (SIGKILL) right after the update`);
    process.kill(process.pid, 'SIGKILL');
  },
  onStep: (s) => say(`[worker ${node.peerId.toString().slice(-6)}] step ${s.step}${s.loss === undefined ? '' : `  loss ${s.loss.toFixed(4)}`}  ${s.ms.toFixed(0)} ms  sent ${formatBytes(s.bytesSent)}  received ${formatBytes(s.bytesReceived)}`),
});
const shutdown = async () => {
  await worker.close();
  await node.stop();
  gpu.destroy();
  process.exit(0);
};
// A stray network promise must not end a volunteer's session; it is logged (with its stack) and training goes on.
process.on('unhandledRejection', (e) => console.error(`[worker] unhandled rejection: ${(e as Error)?.stack ?? e}`));
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
try {
  await worker.run();
} catch (e) {
  console.error(`[worker] failed: ${(e as Error).stack ?? e}`);
  await worker.close();
  await node.stop();
  process.exit(1);
}
await shutdown();
