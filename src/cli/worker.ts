/**
 * `npm run worker`: a headless Node volunteer. It measures its speed, joins the coordinator, gets one stage
 * of one model, connects to the other stage holders over direct WebRTC (signalled through the coordinator's
 * relay) and trains its stage on the local WebGPU device (Dawn; lavapipe without a GPU).
 *
 *   npm run worker -- --coordinator http://127.0.0.1:8787 --key .tessera/worker-1.key
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeCorpus, loadTokenizer } from '../data/brown-node.ts';
import { Gpu } from '../gpu/index.ts';
import { CoordinatorClient } from '../net/coordinator-client.ts';
import { loadOrCreateKey } from '../net/identity-node.ts';
import { createPeer, waitForRelayAddress } from '../net/node.ts';
import { SwarmWorker } from '../net/swarm-worker.ts';
import { formatBytes } from '../train/progress.ts';
import { measureThroughput } from '../train/throughput.ts';

const { values } = parseArgs({
  options: {
    coordinator: { type: 'string' }, key: { type: 'string' }, steps: { type: 'string' }, 'tokens-per-second': { type: 'string' }, 'timeout-ms': { type: 'string' },
  },
});
const client = new CoordinatorClient(values.coordinator ?? 'http://127.0.0.1:8787');
const health = await client.health();
const relayAddr = health.relay?.multiaddrs[0];
if (!relayAddr) throw new Error(`the coordinator at ${client.url} runs no relay`);
const gpu = await Gpu.create();
const privateKey = await loadOrCreateKey(resolve(values.key ?? '.tessera/worker.key'));
const node = await createPeer({ relayAddr, privateKey });
await waitForRelayAddress(node);
const say = (s: string) => console.log(s);
const tokensPerSecond = values['tokens-per-second'] ? Number(values['tokens-per-second']) : await measureThroughput(gpu);
say(`[worker ${node.peerId.toString().slice(-6)}] ${gpu.adapter.description || gpu.adapter.vendor} · ${tokensPerSecond.toFixed(0)} reference tokens/s · relay ${relayAddr}`);
const worker = new SwarmWorker({
  gpu, node, client, relayAddr, kind: 'node', tokensPerSecond,
  loadCorpus: async (vocab) => {
    const tokenizer = loadTokenizer(vocab);
    return { tokenizer, train: await encodeCorpus(tokenizer, 'train'), val: await encodeCorpus(tokenizer, 'val') };
  },
  maxSteps: values.steps ? Number(values.steps) : undefined,
  timeoutMs: values['timeout-ms'] ? Number(values['timeout-ms']) : undefined,
  onStep: (s) => say(`[worker ${node.peerId.toString().slice(-6)}] step ${s.step}${s.loss === undefined ? '' : `  loss ${s.loss.toFixed(4)}`}  ${s.ms.toFixed(0)} ms  sent ${formatBytes(s.bytesSent)}  received ${formatBytes(s.bytesReceived)}`),
});
const shutdown = async () => {
  await worker.close();
  await node.stop();
  gpu.destroy();
  process.exit(0);
};
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
