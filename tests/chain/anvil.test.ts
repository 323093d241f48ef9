import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mnemonicToAccount, privateKeyToAccount } from 'viem/accounts';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestClient, http, type Address } from 'viem';
import { ANVIL_KEYS, lastGoodState, startAnvil } from '../../src/chain/anvil.ts';
import { localStatePath, setupChain } from '../../src/chain/local.ts';
import { chainClients } from '../../src/chain/client.ts';
import { deployTessera, readDeployment, writeDeployment } from '../../src/chain/deploy.ts';
import { ModelRegistryAbi } from '../../src/chain/artifacts.ts';

/** The anvil launcher, dev keys, deployment and deployment files. */
describe('anvil + deploy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-chain-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('ANVIL_KEYS are the dev mnemonic accounts 0..9', () => {
    const mnemonic = 'test test test test test test test test test test test junk';
    expect(ANVIL_KEYS).toHaveLength(10);
    ANVIL_KEYS.forEach((k, i) =>
      expect(privateKeyToAccount(k).address).toBe(mnemonicToAccount(mnemonic, { addressIndex: i }).address),
    );
  });

  it('deploys on a fresh anvil, registers a model, and the chain survives a restart with --state', async () => {
    const statePath = join(dir, 'state.json');
    const a = await startAnvil({ statePath, chainId: 31337 });
    expect(a.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const d = await deployTessera({
      rpcUrl: a.rpcUrl,
      chainId: a.chainId,
      deployerKey: ANVIL_KEYS[0],
      settlerAddress: privateKeyToAccount(ANVIL_KEYS[1]).address,
      challengeDelaySeconds: 60,
      models: [{ modelId: 'tiny-shakespeare', name: 'Tiny Shakespeare shares', symbol: 'TSH' }],
    });
    expect(Object.keys(d.models)).toEqual(['tiny-shakespeare']);
    const file = join(dir, 'deployment.json');
    writeDeployment(file, d);
    expect(readDeployment(file)).toEqual(d);
    await a.stop();

    const b = await startAnvil({ statePath, port: Number(new URL(a.rpcUrl).port) });
    try {
      const c = chainClients(b.rpcUrl, b.chainId);
      expect(
        await c.publicClient.readContract({ address: d.registry, abi: ModelRegistryAbi, functionName: 'modelIds' }),
      ).toEqual(['tiny-shakespeare']);
    } finally {
      await b.stop();
    }
  });

  it('readDeployment names what is wrong with a malformed file', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      '{"rpcUrl": "http://x", "chainId": 1, "registry": "0x12", "paymentToken": ' +
        '"0x0000000000000000000000000000000000000001", "models": {}}',
    );
    expect(() => readDeployment(file)).toThrow(/malformed deployment .*bad\.json: registry is not an address/);
    writeFileSync(file, '{not json');
    expect(() => readDeployment(file)).toThrow(/not JSON/);
    expect(() => readDeployment(join(dir, 'missing.json'))).toThrow(/cannot read deployment/);
  });

  it('startAnvil fails clearly when the port is taken', async () => {
    const a = await startAnvil();
    try {
      await expect(startAnvil({ port: Number(new URL(a.rpcUrl).port) })).rejects.toThrow(/anvil exited/);
    } finally {
      await a.stop();
    }
  });

  /** Marks the chain: a balance only this test sets. */
  const mark = (rpcUrl: string, who: Address, wei: bigint) =>
    createTestClient({ mode: 'anvil', transport: http(rpcUrl) }).setBalance({ address: who, value: wei });
  const balanceOn = async (rpcUrl: string, who: Address) =>
    chainClients(rpcUrl, 31337).publicClient.getBalance({ address: who });
  const someone = '0x00000000000000000000000000000000000000aa' as Address;
  const gone = (pid: number) => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };

  it('a parent that exits without stop() still lets the node dump its state (SIGTERM, not SIGKILL)', async () => {
    const statePath = join(dir, 'orphan.json');
    const script =
      "import { startAnvil } from './src/chain/anvil.ts';" +
      `const a = await startAnvil({ statePath: ${JSON.stringify(statePath)} });` +
      "await fetch(a.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: " +
      "JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'anvil_setBalance', params: ['" +
      someone +
      "', '0x1234'] }) });" +
      'console.log(a.pid); process.exit(0);';
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const pid = Number(r.stdout.trim());
    for (let i = 0; i < 200 && !gone(pid); i++) await new Promise((res) => setTimeout(res, 50));
    expect(gone(pid)).toBe(true);
    const b = await startAnvil({ statePath });
    try {
      expect(await balanceOn(b.rpcUrl, someone)).toBe(0x1234n);
    } finally {
      await b.stop();
    }
  });

  it('with dumpEverySeconds a node SIGKILLed outright keeps what it dumped', async () => {
    const statePath = join(dir, 'interval.json');
    const a = await startAnvil({ statePath, dumpEverySeconds: 1 });
    await mark(a.rpcUrl, someone, 777n);
    await new Promise((res) => setTimeout(res, 2500));
    process.kill(a.pid, 'SIGKILL');
    await a.stop();
    const b = await startAnvil({ statePath });
    try {
      expect(await balanceOn(b.rpcUrl, someone)).toBe(777n);
    } finally {
      await b.stop();
    }
  });

  it('a torn state file falls back to the last good copy, and says so; with no copy it is a clear error', async () => {
    const statePath = join(dir, 'torn.json');
    const a = await startAnvil({ statePath });
    await mark(a.rpcUrl, someone, 4242n);
    await a.stop();
    const b = await startAnvil({ statePath }); // the dump parses: kept as the last good copy
    await b.stop();
    expect(existsSync(lastGoodState(statePath))).toBe(true);
    writeFileSync(statePath, readFileSync(statePath, 'utf8').slice(0, 100)); // a dump cut short
    const notes: string[] = [];
    const c = await startAnvil({ statePath, log: (m) => notes.push(m) });
    try {
      expect(await balanceOn(c.rpcUrl, someone)).toBe(4242n);
      expect(notes.join('\n')).toMatch(/torn .*restored the last good copy/);
    } finally {
      await c.stop();
    }
    const lone = join(dir, 'lone.json');
    writeFileSync(lone, '{"block": ');
    await expect(startAnvil({ statePath: lone })).rejects.toThrow(/unreadable .*no .*last-good to fall back to/);
  });

  it('setupChain refuses a deployment whose chain state is gone and says what to do (no silent redeploy)', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'tessera-local-'));
    try {
      const first = await setupChain(stateDir);
      await first.anvil!.stop();
      expect(existsSync(localStatePath(stateDir))).toBe(true);
      // A clean stop dumped the state: the same contracts come back.
      const again = await setupChain(stateDir);
      expect(again.deployment.registry).toBe(first.deployment.registry);
      await again.anvil!.stop();
      rmSync(localStatePath(stateDir));
      await expect(setupChain(stateDir)).rejects.toThrow(
        /anvil-state\.json is missing, but .*deployment\.json names contracts on it.*Restore the state file.*delete/s,
      );
      expect(existsSync(localStatePath(stateDir))).toBe(false);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
