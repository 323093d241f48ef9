/** Node only: spawns a local anvil chain (the binary from @foundry-rs/anvil) for dev, CLIs and tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Hex } from 'viem';

/** Private keys of anvil's dev accounts 0..9 (mnemonic "test test test ... junk"), each prefunded with 10000 ETH. */
export const ANVIL_KEYS: readonly Hex[] = [
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
  '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba',
  '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e',
  '0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356',
  '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97',
  '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6',
];

export type AnvilOptions = {
  port?: number;
  /** Loaded on start when it exists, dumped on a clean stop (SIGTERM/SIGINT) and every `dumpEverySeconds`. */
  statePath?: string;
  chainId?: number;
  blockTime?: number;
  /** Also dump the state this often, so a node killed outright (SIGKILL, power loss) loses at most that much. */
  dumpEverySeconds?: number;
  /** Where notes go (a torn state file restored from its last good copy). */
  log?: (message: string) => void;
};
export type Anvil = {
  rpcUrl: string;
  chainId: number;
  /** The node's process id (a chaos test SIGKILLs it). */
  pid: number;
  /** SIGTERM (anvil dumps its state), SIGKILL only after `graceMs` (default 10 s) without an exit. */
  stop(graceMs?: number): Promise<void>;
};

/** The copy of the state file kept from the last start whose state parsed: what a torn dump falls back to. */
export const lastGoodState = (statePath: string) => `${statePath}.last-good`;

/**
 * A dump cut short (the node killed while writing) leaves a file that does not parse, and anvil refuses to
 * start from it: fall back to the copy kept at the last start, and say so (the chain loses what came after it;
 * the coordinator's reconcile re-sends what the chain lost). A good file is copied as the new fallback.
 */
function checkState(statePath: string, log: (m: string) => void): void {
  if (!existsSync(statePath)) return;
  const good = lastGoodState(statePath);
  try {
    JSON.parse(readFileSync(statePath, 'utf8'));
    copyFileSync(statePath, `${good}.tmp`);
    renameSync(`${good}.tmp`, good);
  } catch (e) {
    if (!existsSync(good))
      throw new Error(
        `anvil state ${statePath} is unreadable (${(e as Error).message.slice(0, 200)}) and there is no ${good} to ` +
          'fall back to: restore the file or remove it (and the deployment that refers to it) to start a fresh chain',
      );
    renameSync(statePath, `${statePath}.torn`);
    copyFileSync(good, statePath);
    log(`anvil state ${statePath} was torn (kept as ${statePath}.torn): restored the last good copy ${good}`);
  }
}

/** Path of the platform's anvil binary; throws a clear error when the optional package is not installed. */
export function anvilBinary(): string {
  const pkg = `@foundry-rs/anvil-${process.platform}-${process.arch === 'x64' ? 'amd64' : process.arch}`;
  let bin: string;
  try {
    bin = join(dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`)), 'bin', 'anvil');
  } catch {
    throw new Error(`anvil binary not found: package ${pkg} is not installed (npm install @foundry-rs/anvil)`);
  }
  if (!existsSync(bin)) throw new Error(`anvil binary not found at ${bin} (reinstall @foundry-rs/anvil)`);
  return bin;
}

/**
 * Starts anvil on 127.0.0.1 (a free port when none is given: anvil binds port 0 and prints the one it got) and
 * resolves once it answers eth_chainId. With statePath the chain is loaded from and dumped to that file on stop.
 */
export async function startAnvil(opts: AnvilOptions = {}): Promise<Anvil> {
  const chainId = opts.chainId ?? 31337;
  const args = ['--host', '127.0.0.1', '--port', String(opts.port ?? 0), '--chain-id', String(chainId)];
  if (opts.statePath) {
    checkState(opts.statePath, opts.log ?? ((m) => console.warn(`[anvil] ${m}`)));
    args.push('--state', opts.statePath);
    if (opts.dumpEverySeconds !== undefined) args.push('--state-interval', String(opts.dumpEverySeconds));
  }
  if (opts.blockTime !== undefined) args.push('--block-time', String(opts.blockTime));
  const child = spawn(anvilBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // A parent that exits without stop() (an uncaught error, process.exit) must not leave the node running; SIGTERM,
  // not SIGKILL, so the node still dumps its state on its way out.
  const orphanGuard = () => child.kill('SIGTERM');
  process.once('exit', orphanGuard);
  const exited = new Promise<void>((res) =>
    child.once('exit', () => {
      process.off('exit', orphanGuard);
      res();
    }),
  );
  let output = '';
  const port = await new Promise<number>((res, rej) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /Listening on 127\.0\.0\.1:(\d+)/.exec(output);
      if (m) {
        child.stdout!.off('data', onData);
        res(Number(m[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', (e) => rej(new Error(`anvil failed to start: ${e.message}`)));
    child.once('exit', (code) =>
      rej(new Error(`anvil exited (code ${code}) before listening:\n${output.slice(-2000)}`)),
    );
  });
  // Keep draining stdout so a chatty node never blocks on a full pipe.
  child.stdout!.resume();
  const rpcUrl = `http://127.0.0.1:${port}`;
  try {
    await waitForChain(rpcUrl, chainId);
  } catch (e) {
    await stopChild(child, exited);
    throw e;
  }
  return { rpcUrl, chainId, pid: child.pid!, stop: (graceMs?: number) => stopChild(child, exited, graceMs) };
}

async function waitForChain(rpcUrl: string, chainId: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await fetch(rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      });
      const { result } = (await r.json()) as { result?: string };
      if (result !== undefined && Number(result) === chainId) return;
      if (result !== undefined)
        throw new Error(`anvil at ${rpcUrl} reports chain id ${Number(result)}, expected ${chainId}`);
    } catch (e) {
      if (e instanceof Error && e.message.startsWith('anvil at')) throw e;
      if (Date.now() > deadline) throw new Error(`anvil at ${rpcUrl} did not answer eth_chainId within 15 s`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM lets anvil dump --state; SIGKILL if it has not exited after `graceMs`. */
async function stopChild(child: ChildProcess, exited: Promise<void>, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
