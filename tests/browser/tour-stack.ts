/**
 * The `npm start` stack for tests/browser/tour.spec.ts, as a subprocess: scripts/start.ts with its state in a
 * fresh temporary directory (TESSERA_STATE_DIR), free ports, a short epoch and a few local workers, serving the
 * dist/ the test command has just built (TESSERA_NO_BUILD=1). Each process runs in its own process group, so
 * stopping kills everything it started (anvil, coordinator, workers) even when a test fails or times out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { freePort } from './free-port.ts';
import { orderedKeys } from './helpers.ts';

const NODE = 'node_modules/.bin/node';

export interface TourStack {
  app: string;
  coordinator: string;
  rpcUrl: string;
  chainId: number;
  /** The libp2p key the spec stores in the tab (protobuf), and its peer id. */
  tabKey: Uint8Array;
  tabPeerId: string;
  dir: string;
  logs: string[];
  /** Starts one more `npm run worker` against this stack (its own key in the state directory). */
  worker(name: string, args: string[]): ChildProcess;
  /** Stops every process started here (SIGTERM to each group, SIGKILL after 15 s) and removes the state. */
  stop(): Promise<void>;
}

/** A child in its own process group, its output kept in `logs` with a prefix. */
function spawnGroup(args: string[], env: NodeJS.ProcessEnv, logs: string[], name: string): ChildProcess {
  const child = spawn(NODE, ['--import', './scripts/register.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
    detached: true,
  });
  const keep = (d: Buffer) =>
    logs.push(
      ...String(d)
        .split('\n')
        .filter((l) => l.trim() && !l.startsWith('Warning: max'))
        .map((l) => `[${name}] ${l}`),
    );
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return;
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, s);
    } catch {
      // The group is gone already.
    }
  };
  const exited =
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((r) => child.once('exit', () => r()));
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
  // start.ts exits once its services stopped; whatever of the group outlived it (a stuck worker) goes now.
  signal('SIGKILL');
}

export async function startTourStack(o: { workers: number; epochSeconds: number }): Promise<TourStack> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-tour-'));
  const logs: string[] = [];
  const children: ChildProcess[] = [];
  // The tab's peer id sorts first (the dial-race workaround of helpers.ts's orderedKeys).
  const [tabKey, ...workerKeys] = (await orderedKeys(o.workers + 1)).map((k) => k.key);
  workerKeys.forEach((k, i) => writeFileSync(join(dir, `worker-${i + 1}.key`), k, { mode: 0o600 }));
  const stop = async () => {
    await Promise.all(children.reverse().map(stopGroup));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const env = {
      TESSERA_STATE_DIR: dir,
      TESSERA_NO_BUILD: '1',
      TESSERA_NO_OPEN: '1',
      TESSERA_WORKERS: String(o.workers),
      TESSERA_EPOCH_SECONDS: String(o.epochSeconds),
      // A fixed speed: the workers skip their minute-long measurement (every stage gets one peer either way).
      TESSERA_WORKER_TOKENS_PER_SECOND: '100',
      PORT: String(await freePort()),
      TESSERA_COORDINATOR_PORT: String(await freePort()),
      TESSERA_CHAIN_PORT: String(await freePort()),
    };
    const start = spawnGroup(['scripts/start.ts'], env, logs, 'start');
    children.push(start);
    const urls = await new Promise<{ app: string; coordinator: string; rpcUrl: string; chainId: number }>(
      (resolve, reject) => {
        const found: Record<string, string> = {};
        start.stdout!.on('data', (d: Buffer) => {
          for (const line of String(d).split('\n')) {
            const m =
              /^\[tessera\] (app|coordinator) at (\S+)/.exec(line) ??
              /^\[tessera\] (chain) (http\S+) \(id (\d+)\)/.exec(line);
            if (m) found[m[1]] = m[2].replace(/\/$/, '');
            if (m?.[1] === 'chain') found.chainId = m[3];
            if (/^\[tessera\] started \d+ local worker/.test(line)) {
              resolve({
                app: found.app,
                coordinator: found.coordinator,
                rpcUrl: found.chain,
                chainId: Number(found.chainId),
              });
            }
          }
        });
        start.once('exit', (code) => reject(new Error(`npm start exited with ${code}:\n${logs.join('\n')}`)));
      },
    );
    if (!urls.app || !urls.coordinator || !urls.rpcUrl)
      throw new Error(`npm start did not print every URL: ${JSON.stringify(urls)}\n${logs.join('\n')}`);
    return {
      ...urls,
      tabKey,
      tabPeerId: peerIdFromPrivateKey(privateKeyFromProtobuf(tabKey)).toString(),
      dir,
      logs,
      stop,
      worker(name, args) {
        const child = spawnGroup(
          ['src/cli/worker.ts', '--coordinator', urls.coordinator, '--key', join(dir, `${name}.key`), ...args],
          {},
          logs,
          name,
        );
        children.push(child);
        return child;
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
