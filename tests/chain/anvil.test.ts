import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mnemonicToAccount, privateKeyToAccount } from 'viem/accounts';
import { afterAll, describe, expect, it } from 'vitest';
import { ANVIL_KEYS, startAnvil } from '../../src/chain/anvil.ts';
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
});
