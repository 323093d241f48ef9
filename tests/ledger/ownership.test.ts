import { join } from 'node:path';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { createPublicClient, createTestClient, http, parseEther, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, describe, expect, it } from 'vitest';
import { ANVIL_KEYS, startAnvil, type Anvil } from '../../src/chain/anvil.ts';
import {
  chainClients,
  claimShares,
  depositEth,
  shareBalance,
  withdrawableOf,
  withdrawEth,
} from '../../src/chain/client.ts';
import { deployTessera } from '../../src/chain/deploy.ts';
import { bindingTypedData, signBindingAsPeer } from '../../src/ledger/binding.ts';
import { loadOrCreateKey } from '../../src/net/identity-node.ts';
import { smallSpec } from '../../src/train/run-spec.ts';
import { exited, logTo, runTs, swarmFixture } from '../net/worker-processes.ts';

/**
 * SLOW (~1–2 min): ownership end to end. Four `npm run worker` processes (2 stages × 2 replicas, audits on every
 * forward) train over WebRTC and receipt their work; one of them corrupts half of its outputs. Each peer is
 * bound to a wallet (EIP-712 + its peer key), the epoch settles (the cheater is caught: no shares, banned),
 * `npm run verify-epoch` recomputes the root from the published receipts, the honest wallets claim their
 * shares on anvil, revenue is paid into the vault and a holder withdraws exactly its pro-rata part.
 */
const STEPS = 5;
/**
 * Both blocks on stage 0, the head alone on stage 1: the two stages cost about the same (2·24·C² vs 2·C·vocab
 * FLOPs per token), so four equal peers are placed 2 + 2 and every stage has a sibling to audit it — the
 * cheater is checked wherever it lands.
 */
const spec = smallSpec({ layout: [2, 0], microBatches: 4, batch: 2, seed: 1 });
const ADMIN = 'e2e-admin';
const MODEL = 'own-test';

describe('ownership end to end (slow)', () => {
  let anvil: Anvil | undefined;
  // Registered first, so it runs last: the coordinator stops before the chain it settles on.
  afterAll(async () => {
    await anvil?.stop();
  });
  const swarm = swarmFixture('own');

  it(
    'workers train and receipt, a cheater is caught, an epoch settles and verifies, holders claim and ' +
      'withdraw revenue',
    async () => {
      anvil = await startAnvil();
      const deployment = await deployTessera({
        rpcUrl: anvil.rpcUrl,
        chainId: anvil.chainId,
        deployerKey: ANVIL_KEYS[0],
        settlerAddress: privateKeyToAccount(ANVIL_KEYS[1]).address,
        challengeDelaySeconds: 30,
      });
      const coord = await swarm.start({
        adminToken: ADMIN,
        banAfter: 1,
        chain: {
          deployment,
          deploymentPath: join(swarm.dir, 'deployment.json'),
          settlerKey: ANVIL_KEYS[1],
          ownerKey: ANVIL_KEYS[0],
        },
      });
      const url = coord.url;
      const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
        const res = await fetch(url + path, {
          method,
          headers: { 'content-type': 'application/json', ...headers },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return { status: res.status, json: (await res.json()) as any };
      };
      await swarm.register(MODEL, 'ownership test', spec);

      // Each peer's identity exists before it runs, so its wallet can be bound first.
      const keys = await Promise.all([1, 2, 3, 4].map((i) => loadOrCreateKey(swarm.key(i))));
      const peers = keys.map((k) => peerIdFromPrivateKey(k).toString());
      const wallets = [2, 3, 4, 5].map((i) => privateKeyToAccount(ANVIL_KEYS[i]));
      for (let i = 0; i < 4; i++) {
        const m = {
          peerId: peers[i],
          wallet: wallets[i].address,
          nonce: 1n,
          expiry: BigInt(Math.floor(Date.now() / 1000) + 600),
        };
        const b = await call('POST', '/api/bindings', {
          peerId: m.peerId,
          wallet: m.wallet,
          nonce: '1',
          expiry: String(m.expiry),
          walletSignature: await wallets[i].signTypedData(bindingTypedData(anvil.chainId, m)),
          peerSignature: await signBindingAsPeer(keys[i], anvil.chainId, m),
        });
        expect(b.status, JSON.stringify(b.json)).toBe(201);
      }

      const CHEATER = 3; // worker w4
      const logs: string[] = [];
      const exits = [0, 1, 2, 3].map((i) => {
        const child = swarm.worker(swarm.key(i + 1), [
          '--until-step',
          String(STEPS),
          '--tokens-per-second',
          '100',
          '--audit-fraction',
          '1',
          ...(i === CHEATER ? ['--corrupt-share', '0.5'] : []),
        ]);
        logTo(child, logs, `[w${i + 1}] `);
        return exited(child);
      });
      expect(await Promise.all(exits), logs.join('')).toEqual([0, 0, 0, 0]);
      const layout = (await call('GET', `/api/models/${MODEL}`)).json.model;
      expect(layout.steps.done, JSON.stringify(layout)).toBe(STEPS);

      // Settle epoch 1 (steps 0 … STEPS−2; the last step's receipts wait for the next epoch).
      const settled = await call('POST', `/api/models/${MODEL}/epochs`, {}, { authorization: `Bearer ${ADMIN}` });
      expect(settled.status, JSON.stringify(settled.json)).toBe(201);
      const e = settled.json;
      const placement = (await call('GET', '/api/events?limit=1000')).json.events
        .filter((x: { kind: string }) => x.kind === 'assign')
        .map((x: { detail: unknown }) => x.detail);
      expect(
        e.caught,
        JSON.stringify({ counts: e.auditCounts, verdicts: e.verdicts, placement, cheater: peers[CHEATER] }, null, 1),
      ).toEqual([peers[CHEATER]]);
      expect(e.auditCounts.mismatch).toBeGreaterThan(0);
      expect(e.auditCounts.match).toBeGreaterThan(0);
      const leafOf = (w: string) => e.leaves.find((l: { wallet: string }) => l.wallet === w);
      expect(leafOf(wallets[CHEATER].address)).toBeUndefined();
      const honest = [0, 1, 2];
      for (const i of honest) expect(BigInt(leafOf(wallets[i].address).shares)).toBeGreaterThan(0n);
      expect(e.txHash).toMatch(/^0x/);
      // One strike is enough here (banAfter 1): the cheater is out of the swarm, and a join answers why.
      const again = await call('POST', '/api/peers/join', {
        peerId: peers[CHEATER],
        kind: 'node',
        tokensPerSecond: 100,
      });
      expect(again.json).toMatchObject({ status: 'wait' });
      expect(again.json.reason).toMatch(/banned from assignment: caught in epoch 1/);

      // Anyone can recompute the root from what the coordinator publishes.
      // (Asynchronously: the coordinator answering it runs in this process.)
      const verify = await runTs(['src/cli/verify-epoch.ts', '1', '--model', MODEL, '--coordinator', url]);
      expect(verify.status, verify.stdout + verify.stderr).toBe(0);
      expect(verify.stdout).toMatch(/OK: the root follows/);
      expect(verify.stdout).toContain(`on-chain root    ${e.root}`);

      // Claim after the challenge window; shares minted = the leaf.
      const test = createTestClient({ mode: 'anvil', transport: http(anvil.rpcUrl) });
      await test.increaseTime({ seconds: 31 });
      await test.mine({ blocks: 1 });
      const addrs = coord.chain!.info().models[MODEL];
      for (const i of honest) {
        const view = (await call('GET', `/api/wallets/${wallets[i].address}`)).json.models.find(
          (m: { modelId: string }) => m.modelId === MODEL,
        );
        const c = chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[2 + i]);
        await claimShares(c, addrs, {
          epoch: BigInt(view.claim.epoch),
          account: wallets[i].address,
          cumulativeShares: BigInt(view.claim.cumulative),
          proof: view.claim.proof as Hex[],
        });
        expect(await shareBalance(c, addrs, wallets[i].address)).toBe(BigInt(leafOf(wallets[i].address).shares));
      }

      // Inference revenue arrives; holder 0 withdraws exactly balance × (revenue·2^128 / supply) / 2^128.
      const payer = chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[6]);
      const revenue = parseEther('1');
      await depositEth(payer, addrs, revenue);
      const supply = honest.reduce((a, i) => a + BigInt(leafOf(wallets[i].address).shares), 0n);
      const M = 2n ** 128n;
      const c0 = chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[2]);
      const bal0 = BigInt(leafOf(wallets[0].address).shares);
      const expected = (bal0 * ((revenue * M) / supply)) / M;
      expect((await withdrawableOf(c0, addrs, wallets[0].address)).eth).toBe(expected);
      const pub = createPublicClient({ transport: http(anvil.rpcUrl) });
      const before = await pub.getBalance({ address: wallets[0].address });
      const rc = await withdrawEth(c0, addrs);
      const after = await pub.getBalance({ address: wallets[0].address });
      expect(after - before + rc.gasUsed * rc.effectiveGasPrice).toBe(expected);
      // Together the holders' parts never exceed what was paid in.
      let total = 0n;
      for (const i of honest) total += (await withdrawableOf(c0, addrs, wallets[i].address)).eth;
      expect(total + expected).toBeLessThanOrEqual(revenue);
      expect(revenue - (total + expected)).toBeLessThanOrEqual(3n);
    },
  );
});
