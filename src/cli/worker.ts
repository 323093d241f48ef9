/**
 * `npm run worker`: a headless Node volunteer. It measures its speed, joins the coordinator, gets one stage
 * of one model, connects to the other stage holders over direct WebRTC (signalled through the coordinator's
 * relay) and trains its stage on the local WebGPU device (Dawn; lavapipe without a GPU).
 *
 *   npm run worker -- --coordinator http://127.0.0.1:8787 --key .tessera/worker-1.key
 *
 * Options (`npm run worker -- --help`): the program below; --crash-after-update and --corrupt-share are fault
 * injection for tests. An unknown --model id is refused at the join.
 * Between training steps the worker serves inference for its stage over /tessera/infer/1.0.0 (src/infer/serve.ts).
 * Every unit of work is receipted: signed with the peer key and posted to the coordinator's ledger.
 * The worker rides out pipeline changes (peers vanishing, joining or moving): see src/net/swarm-worker.ts.
 */
import { join, resolve } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import { loadCorpus } from '../data/brown-node.ts';
import { Gpu } from '../gpu/index.ts';
import { CoordinatorClient, type JoinAnswer } from '../net/coordinator-client.ts';
import { loadOrCreateKey } from '../net/identity-node.ts';
import { createPeer, waitForRelayAddress } from '../net/node.ts';
import { SnapshotFiles } from '../net/snapshot-files.ts';
import { AUDIT_FRACTION, SwarmWorker } from '../net/swarm-worker.ts';
import { FileOutbox } from '../ledger/outbox-file.ts';
import { ReceiptReporter } from '../ledger/reporter.ts';
import { InferenceServer } from '../infer/serve.ts';
import { wireTapToFiles } from '../net/wire-tap-files.ts';
import { secretCoin } from '../train/work.ts';
import { formatBytes } from '../train/progress.ts';
import { measureThroughput } from '../train/throughput.ts';
import { cli, httpUrl, nonEmpty, nonNegativeInt, share } from './args.ts';
import { DEFAULT_COORDINATOR_URL } from './defaults.ts';

interface WorkerCli {
  coordinator: string;
  key: string;
  state?: string;
  model?: string;
  steps?: number;
  untilStep?: number;
  tokensPerSecond?: number;
  timeoutMs?: number;
  crashAfterUpdate?: number;
  auditFraction: number;
  corruptShare: number;
  stay?: boolean;
  inferencePriority: number;
  dutyCycle: number;
  inferRuntime: 'auto' | 'wgsl' | 'onnx';
}

/** A GPU-use cap: a device that never computes cannot train, so 0 is refused. */
function dutyCycleArg(raw: string): number {
  const x = share(raw);
  if (x === 0) throw new InvalidArgumentError('Must be above 0 (a device that never computes cannot train).');
  return x;
}

const program = cli({
  name: 'worker',
  usage: 'npm run worker -- [options]',
  description:
    'A headless Node volunteer: measures its speed, joins the coordinator, gets one stage of one ' +
    'model, trains it with the other stage holders over direct WebRTC and serves inference for it ' +
    'between steps.',
  after: `Environment:
  TESSERA_WIRE_TAP  diagnostics: write every received byte and the held weights under this folder

Example:
  npm run worker -- --coordinator http://127.0.0.1:8787 --key .tessera/worker-1.key`,
})
  .option('--coordinator <url>', "the coordinator's HTTP API", httpUrl, DEFAULT_COORDINATOR_URL)
  .option('--key <file>', 'libp2p identity, created on first use', nonEmpty, '.tessera/worker.key')
  .option(
    '--state <dir>',
    "durable state: the stage's snapshots and unsent receipts (default: the key's path with .state for .key)",
    nonEmpty,
  )
  .option(
    '--model <id>',
    'ask for this model\'s stages, as a tab\'s "choose a model" does (default: where most needed)',
    (raw: string) => {
      if (raw === '') throw new InvalidArgumentError('Needs a model id (see GET /api/models).');
      return raw;
    },
  )
  .option('--steps <n>', 'stop after n steps of this worker (default: no limit)', nonNegativeInt)
  .option(
    '--until-step <n>',
    'stop once the model stands at step n: every worker given the same n stops together (default: no limit)',
    nonNegativeInt,
  )
  .option('--tokens-per-second <n>', "this device's speed; skips the measurement (default: measured)", nonNegativeInt)
  .option(
    '--timeout-ms <ms>',
    "a silent neighbour fails the step after this long (default: the engine's)",
    nonNegativeInt,
  )
  .option(
    '--audit-fraction <f>',
    'share of forwards a sibling recomputes; every worker of a swarm must use the same',
    share,
    AUDIT_FRACTION,
  )
  .option('--stay', 'once the step target is reached, keep the stage and serve inference until stopped')
  .option('--inference-priority <p>', "share of the device's turns inference gets while training waits too", share, 0.5)
  .option('--duty-cycle <d>', 'GPU-use cap: share of wall time the device computes, in (0, 1]', dutyCycleArg, 1)
  .addOption(
    new Option('--infer-runtime <name>', 'how the held stage serves inference: auto measures both and picks the faster')
      .choices(['auto', 'wgsl', 'onnx'])
      .default('auto'),
  )
  .option(
    '--crash-after-update <n>',
    "fault injection for tests: SIGKILL this process right after applying step n's update",
    nonNegativeInt,
  )
  .option('--corrupt-share <f>', "fault injection for tests: corrupt this share of this worker's own outputs", share, 0)
  .parse();
const values = program.opts<WorkerCli>();
const auditFraction = values.auditFraction;
const corruptShare = values.corruptShare;
const inferencePriority = values.inferencePriority;
const dutyCycle = values.dutyCycle;
const maxSteps = values.steps;
const untilStep = values.untilStep;
const timeoutMs = values.timeoutMs;
const givenSpeed = values.tokensPerSecond;
const crashAfter = values.crashAfterUpdate;
const inferRuntime = values.inferRuntime;
/** Survives restarts with the key: a peer that comes back resumes the model from what it kept here. */
const stateDir = resolve(values.state ?? `${values.key.replace(/\.key$/, '')}.state`);
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
const coordinatorUrl = values.coordinator;
const client = values.model
  ? new PreferringClient(coordinatorUrl, values.model)
  : new CoordinatorClient(coordinatorUrl);
// A coordinator that is not up yet (npm start, a restart) is waited for: the first outage line says so.
const offOutage = client.onOutage((e) => e.type === 'down' && console.log(`[worker] ${e.error.message}; retrying`));
const health = await client.untilAnswered(() => client.health());
offOutage();
const relayAddr = health.relay?.multiaddrs[0];
if (!relayAddr) throw new Error(`the coordinator at ${client.url} runs no relay`);
const gpu = await Gpu.create();
const privateKey = await loadOrCreateKey(resolve(values.key));
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
  // Unsent receipts survive a crash or a restart in the state folder: the next start sends them.
  outbox: new FileOutbox(join(stateDir, 'receipts.jsonl'), (l) =>
    say(`[worker ${node.peerId.toString().slice(-6)}] ${l}`),
  ),
  log: (l) => say(`[worker ${node.peerId.toString().slice(-6)}] ${l}`),
});
reporter.start();
// The cheater's own coin: which outputs it corrupts is as unpredictable to the auditors as their picks are to it.
const cheat = secretCoin(crypto.getRandomValues(new Uint8Array(32)));
const tokensPerSecond = givenSpeed ?? (await measureThroughput(gpu));
say(
  `[worker ${node.peerId.toString().slice(-6)}] ${gpu.adapter.description || gpu.adapter.vendor} · ` +
    `${tokensPerSecond.toFixed(0)} reference tokens/s · relay ${relayAddr}`,
);
const snapshots = new SnapshotFiles(stateDir, (l) => say(`[worker ${node.peerId.toString().slice(-6)}] ${l}`));
{
  const { bytes, count } = await snapshots.usage();
  const newest = (await snapshots.list())[0];
  say(
    `[worker ${node.peerId.toString().slice(-6)}] state ${stateDir}: ${count} stage snapshot(s), ` +
      formatBytes(bytes) +
      (newest ? `; newest stage ${newest.stage}@${newest.step} of ${newest.model}` : ''),
  );
}
const worker = new SwarmWorker({
  gpu,
  node,
  snapshots,
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
      `[worker ${node.peerId.toString().slice(-6)}] --crash-after-update ${step}: killing this process ` +
        `(SIGKILL) right after the update`,
    );
    process.kill(process.pid, 'SIGKILL');
  },
  onStep: (s) =>
    say(
      `[worker ${node.peerId.toString().slice(-6)}] step ` +
        `${s.step}${s.loss === undefined ? '' : `  loss ${s.loss.toFixed(4)}`}  ${s.ms.toFixed(0)} ms  sent ` +
        `${formatBytes(s.bytesSent)}  received ${formatBytes(s.bytesReceived)}`,
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
let leaving: Promise<void> | undefined;
/**
 * SIGTERM, SIGINT or the step target: a graceful leave (src/net/worker/swarm-worker.ts leave(): the stage is
 * written to the state folder and handed off to its successor), once however many times it is asked for.
 */
const shutdown = (handoff = true) =>
  (leaving ??= (async () => {
    await inference.stop();
    // Receipts first: once the worker has left, its stage is no longer its own to claim work on.
    worker.stop();
    await reporter.stop();
    await worker.leave(handoff ? {} : { handoffMs: 0 });
    await node.stop();
    gpu.destroy();
    process.exit(0);
  })());
// A stray network promise must not end a volunteer's session; it is logged (with its stack) and training goes on.
process.on('unhandledRejection', (e) => console.error(`[worker] unhandled rejection: ${(e as Error)?.stack ?? e}`));
process.on('SIGINT', () => shutdown());
process.on('SIGTERM', () => shutdown());
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
} else await shutdown(false); // every worker given the target stops at it: nobody to hand off to
