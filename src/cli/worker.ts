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
 * process SIGKILLs itself the moment it has applied step N's update, before reporting it), --audit-fraction F
 * (share of forwards a sibling recomputes; every worker of a swarm must use the same, default 0.1),
 * --corrupt-share F (fault injection for the malicious-worker test: corrupt this share of its own outputs),
 * --stay (once the step target is reached, keep the stage and serve inference until stopped), --inference-priority P
 * (share of the device's turns inference gets while training waits too, 0..1, default 0.5), --duty-cycle D (GPU-use
 * cap: share of wall time the device computes, (0, 1], default 1).
 * --model <id> (ask the coordinator for this model's stages, as a tab's "choose a model" does; without it the worker
 * goes where most needed; an unknown id is refused at the join).
 * --infer-runtime auto|wgsl|onnx (how the held stage serves inference: 'auto', the default, measures our WGSL kernels
 * and onnxruntime-web on this device and serves with the faster; src/infer/stage-runtime.ts).
 * Between training steps the worker serves inference for its stage over /tessera/infer/1.0.0 (src/infer/serve.ts).
 * Every unit of work is receipted: signed with the peer key and posted to the coordinator's ledger.
 * The worker rides out pipeline changes (peers vanishing, joining or moving): see src/net/swarm-worker.ts.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadCorpus } from '../data/brown-node.ts';
import { Gpu } from '../gpu/index.ts';
import { CoordinatorClient, type JoinAnswer } from '../net/coordinator-client.ts';
import { loadOrCreateKey } from '../net/identity-node.ts';
import { createPeer, waitForRelayAddress } from '../net/node.ts';
import { AUDIT_FRACTION, SwarmWorker } from '../net/swarm-worker.ts';
import { ReceiptReporter } from '../ledger/reporter.ts';
import { InferenceServer } from '../infer/serve.ts';
import { wireTapToFiles } from '../net/wire-tap-files.ts';
import { secretCoin } from '../train/work.ts';
import { formatBytes } from '../train/progress.ts';
import { measureThroughput } from '../train/throughput.ts';

const { values } = parseArgs({
  options: {
    'infer-runtime': { type: 'string' },
    model: { type: 'string' },
    coordinator: { type: 'string' },
    key: { type: 'string' },
    steps: { type: 'string' },
    'until-step': { type: 'string' },
    'tokens-per-second': { type: 'string' },
    'timeout-ms': { type: 'string' },
    'crash-after-update': { type: 'string' },
    'audit-fraction': { type: 'string' },
    'corrupt-share': { type: 'string' },
    stay: { type: 'boolean' },
    'inference-priority': { type: 'string' },
    'duty-cycle': { type: 'string' },
  },
});
/** A share in [0, 1] option. */
function share(name: 'audit-fraction' | 'corrupt-share' | 'inference-priority' | 'duty-cycle', dflt: number): number {
  const raw = values[name];
  const x = raw === undefined ? dflt : Number(raw);
  if (!(x >= 0 && x <= 1)) throw new Error(`--${name} must be a number in [0, 1], not "${raw}"`);
  return x;
}
const auditFraction = share('audit-fraction', AUDIT_FRACTION);
const corruptShare = share('corrupt-share', 0);
const inferencePriority = share('inference-priority', 0.5);
const dutyCycle = share('duty-cycle', 1);
if (dutyCycle === 0) throw new Error('--duty-cycle must be above 0 (a device that never computes cannot train)');
/** A non-negative integer option, or undefined when absent. */
function count(
  name: 'steps' | 'until-step' | 'tokens-per-second' | 'timeout-ms' | 'crash-after-update',
): number | undefined {
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
const inferRuntime = values['infer-runtime'] ?? 'auto';
if (inferRuntime !== 'auto' && inferRuntime !== 'wgsl' && inferRuntime !== 'onnx')
  throw new Error(`--infer-runtime must be auto, wgsl or onnx, not "${inferRuntime}"`);
/** A client whose every join (the first, and re-joins after the coordinator dropped this peer) asks for one model. */
class PreferringClient extends CoordinatorClient {
  readonly preferModel: string;
  constructor(url: string, preferModel: string) {
    super(url);
    this.preferModel = preferModel;
  }
  override join(
    peerId: string,
    tokensPerSecond: number,
    kind: 'node' | 'browser',
    preferModel?: string,
  ): Promise<JoinAnswer> {
    return super.join(peerId, tokensPerSecond, kind, preferModel ?? this.preferModel);
  }
}
const coordinatorUrl = values.coordinator ?? 'http://127.0.0.1:8787';
if (values.model === '') throw new Error('--model needs a model id (see GET /api/models)');
const client = values.model
  ? new PreferringClient(coordinatorUrl, values.model)
  : new CoordinatorClient(coordinatorUrl);
const health = await client.health();
const relayAddr = health.relay?.multiaddrs[0];
if (!relayAddr) throw new Error(`the coordinator at ${client.url} runs no relay`);
const gpu = await Gpu.create();
const privateKey = await loadOrCreateKey(resolve(values.key ?? '.tessera/worker.key'));
const node = await createPeer({ relayAddr, privateKey });
await waitForRelayAddress(node);
// Diagnostics (tests/infer/no-weights-leak.test.ts): every byte received, and the held stage's weights at each step.
const tapDir = process.env.TESSERA_WIRE_TAP;
const snapshot = tapDir ? wireTapToFiles(node, tapDir) : undefined;
const say = (s: string) => console.log(s);
const reporter = new ReceiptReporter({
  key: privateKey,
  peerId: node.peerId.toString(),
  coordinatorUrl: client.url,
  log: (l) => say(`[worker ${node.peerId.toString().slice(-6)}] ${l}`),
});
reporter.start();
// The cheater's own coin: which outputs it corrupts is as unpredictable to the auditors as their picks are to it.
const cheat = secretCoin(crypto.getRandomValues(new Uint8Array(32)));
const tokensPerSecond = givenSpeed ?? (await measureThroughput(gpu));
say(
  `[worker ${node.peerId.toString().slice(-6)}] ${gpu.adapter.description || gpu.adapter.vendor} · ${tokensPerSecond.toFixed(0)} reference tokens/s · relay ${relayAddr}`,
);
const worker = new SwarmWorker({
  gpu,
  node,
  client,
  relayAddr,
  kind: 'node',
  tokensPerSecond,
  loadCorpus,
  maxSteps,
  untilStep,
  timeoutMs,
  inferencePriority,
  dutyCycle,
  audit: { fraction: auditFraction, coin: secretCoin(crypto.getRandomValues(new Uint8Array(32))) },
  onWork: (w, c) => reporter.add(w, c),
  corrupt: corruptShare > 0 ? (step, micro) => cheat(step, micro, 9) < corruptShare : undefined,
  onUpdateApplied: (step) => {
    snapshot?.(worker.heldStage());
    if (step !== crashAfter) return;
    console.log(
      `[worker ${node.peerId.toString().slice(-6)}] --crash-after-update ${step}: killing this process (SIGKILL) right after the update`,
    );
    process.kill(process.pid, 'SIGKILL');
  },
  onStep: (s) =>
    say(
      `[worker ${node.peerId.toString().slice(-6)}] step ${s.step}${s.loss === undefined ? '' : `  loss ${s.loss.toFixed(4)}`}  ${s.ms.toFixed(0)} ms  sent ${formatBytes(s.bytesSent)}  received ${formatBytes(s.bytesReceived)}`,
    ),
});
// Inference with the stage's current weights, between training steps (and after them with --stay).
if (snapshot) setInterval(() => snapshot(worker.heldStage()), 300).unref();
const inference = new InferenceServer({
  node,
  held: () => worker.heldStage(),
  runtime: inferRuntime,
  key: privateKey,
  turns: worker.turns,
  log: (l) => say(`[worker ${node.peerId.toString().slice(-6)}] ${l}`),
});
await inference.start();
const shutdown = async () => {
  await inference.stop();
  // Receipts first: once the worker has left, its stage is no longer its own to claim work on.
  worker.stop();
  await reporter.stop();
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
  await reporter.stop();
  await node.stop();
  process.exit(1);
}
if (values.stay) {
  worker.keepAlive();
  say(`[worker ${node.peerId.toString().slice(-6)}] training target reached; serving inference until stopped (--stay)`);
} else await shutdown();
