import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { createTestClient, http } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANVIL_KEYS, startAnvil, type Anvil } from '../../src/chain/anvil.ts';
import { chainClients, claimShares, claimedOf, readRoot, shareBalance } from '../../src/chain/client.ts';
import { deployTessera } from '../../src/chain/deploy.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { LedgerStore } from '../../src/coordinator/ledger-store.ts';
import { bindingTypedData, signBindingAsPeer } from '../../src/ledger/binding.ts';
import { receiptFlops } from '../../src/ledger/flops.ts';
import { signReceipt, type WorkReceipt } from '../../src/ledger/receipt.ts';
import { splitStages } from '../../src/model/stages.ts';
import { stageIncrementalFlops } from '../../src/model/flops.ts';
import { bytesOf, hopReceipt } from '../../src/infer/hop-receipt.ts';
import { memoryLog, tempDir, tinyConfig } from './fixtures.ts';

/** The ledger over HTTP against a real anvil: receipts in, forgeries out, bindings, settlement, a claim on chain. */
describe('contribution ledger (coordinator + anvil)', () => {
  const tmp = tempDir();
  const logs = memoryLog();
  const ADMIN = 'test-admin-token';
  let anvil: Anvil;
  let coord: Coordinator;
  const model = {
    id: 'ledger-tiny',
    name: 'Ledger tiny',
    config: tinyConfig,
    layout: [2, 2],
    codec: 'none',
    microBatches: 2,
    batch: 2,
    pricePer1kTokens: 0.5,
  };
  const specs = splitStages(tinyConfig, 2, [2, 2]);
  const peers: Array<{ key: PrivateKey; id: string; stage: number }> = [];
  const wallets = [privateKeyToAccount(ANVIL_KEYS[2]), privateKeyToAccount(ANVIL_KEYS[3])];

  async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(coord.url + path, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as any };
  }
  const H = (c: string) => '0x' + c.repeat(64);
  /** A 3-token prompt's hop through a stage (the head projects its last row). */
  const inferFlops = (stage: number) => stageIncrementalFlops(tinyConfig, specs[stage], 3, 0, 1);
  const receipt = (
    p: { id: string; stage: number },
    step: number,
    micro: number,
    over: Partial<WorkReceipt> = {},
  ): WorkReceipt => ({
    model: model.id,
    round: 1,
    stage: p.stage,
    replica: 0,
    replicas: 1,
    step,
    micro,
    kind: 'train',
    flops: receiptFlops(tinyConfig, specs[p.stage], model.batch, tinyConfig.context, 'train'),
    // Stage 0's output is stage 1's input: the hashes chain so the verdict corroborates both.
    inputHash: p.stage === 0 ? H('0') : H(((step * 2 + micro) % 10).toString()),
    outputHash: p.stage === 0 ? H(((step * 2 + micro) % 10).toString()) : H('f'),
    peerId: p.id,
    ...over,
  });

  beforeAll(async () => {
    anvil = await startAnvil();
    const deployment = await deployTessera({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      deployerKey: ANVIL_KEYS[0],
      settlerAddress: privateKeyToAccount(ANVIL_KEYS[1]).address,
      challengeDelaySeconds: 600,
    });
    coord = await Coordinator.start({
      dbPath: join(tmp.dir, 'c.db'),
      heartbeatMs: 60_000,
      log: logs.log,
      adminToken: ADMIN,
      chain: { deployment, settlerKey: ANVIL_KEYS[1], ownerKey: ANVIL_KEYS[0] },
    });
    expect((await call('POST', '/api/models', model)).status).toBe(201);
    for (let i = 0; i < 2; i++) {
      const key = await generateKeyPair('Ed25519');
      const id = peerIdFromPrivateKey(key).toString();
      const joined = await call('POST', '/api/peers/join', { peerId: id, kind: 'node', tokensPerSecond: 100 });
      peers.push({ key, id, stage: joined.json.assignment.stage });
    }
    expect(peers.map((p) => p.stage).sort()).toEqual([0, 1]);
    peers.sort((a, b) => a.stage - b.stage);
    for (let step = 0; step < 3; step++)
      expect((await call('POST', `/api/models/${model.id}/metrics`, { step, loss: 3 - step / 10 })).status).toBe(201);
  });
  afterAll(async () => {
    await coord?.stop();
    await anvil?.stop();
    tmp.cleanup();
  });

  it('stores signed receipts and refuses forgeries one by one, with the reason', async () => {
    const [a, b] = peers;
    const good = [
      ...(await Promise.all([0, 1].flatMap((step) => [0, 1].map((m) => signReceipt(a.key, receipt(a, step, m)))))),
      ...(await Promise.all([0, 1].flatMap((step) => [0, 1].map((m) => signReceipt(b.key, receipt(b, step, m)))))),
    ];
    const ok = await call('POST', `/api/models/${model.id}/receipts`, { receipts: good });
    expect(ok.json).toEqual({ accepted: 8, rejected: [] });
    const forged = [
      { ...(await signReceipt(a.key, receipt(a, 2, 0))), outputHash: H('9') }, // changed after signing
      await signReceipt(b.key, receipt(a, 2, 1)), // another peer's key
      await signReceipt(a.key, receipt(a, 2, 0, { flops: 10 ** 12 })), // inflated FLOPs
      good[0], // duplicate
      await signReceipt(a.key, receipt(a, 2, 1, { stage: 1, inputHash: H('1') })), // a stage it never held
      await signReceipt(a.key, receipt(a, 9, 0)), // a step the swarm has not reached
      { ...good[1], model: 'other' }, // posted to the wrong model
      { nonsense: true },
    ];
    const bad = await call('POST', `/api/models/${model.id}/receipts`, { receipts: forged });
    expect(bad.json.accepted).toBe(0);
    const reasons = bad.json.rejected.map((r: { reason: string }) => r.reason);
    const expected = [
      /signature is not this peer/,
      /signature is not this peer/,
      /claims 1000000000000 FLOPs; this unit computes \d+/,
      /duplicate/,
      /never held stage 1/,
      /ahead of the swarm/,
      /names model other/,
      /unknown receipt field/,
    ];
    expected.forEach((re, i) => expect(reasons[i]).toMatch(re));
    expect(logs.lines.filter((l) => l.level === 'warn' && /receipt refused/.test(l.message)).length).toBe(
      forged.length,
    );
    expect((await call('POST', `/api/models/${model.id}/receipts`, { receipts: [] })).status).toBe(400);
    expect((await call('POST', `/api/models/nope/receipts`, { receipts: good })).status).toBe(404);
  });

  it(
    'records inference hop receipts the requester checked; peers cannot post them, wrong FLOPs and replays ' +
      'are refused',
    async () => {
      const hop = (p: (typeof peers)[number], unit: number, over: Partial<WorkReceipt> = {}) =>
        hopReceipt(
          p.key,
          {
            model: model.id,
            round: 1,
            stage: p.stage,
            replica: 0,
            replicas: 1,
            step: 1,
            sessionStep: 1,
            peerId: p.id,
          },
          {
            unit,
            audit: false,
            flops: inferFlops(p.stage),
            input: bytesOf(Int32Array.of(1, 2, 3)),
            output: Float32Array.of(0.5, -1, 2),
            ...over,
          },
        );
      const [a, b] = peers;
      const ra = await hop(a, 7);
      expect((await coord.ledger.recordInference(model.id, ra, inferFlops(0))).micro).toBe(7);
      await coord.ledger.recordInference(model.id, await hop(b, 7), inferFlops(1));
      await expect(coord.ledger.recordInference(model.id, ra, inferFlops(0))).rejects.toThrow(/duplicate/);
      await expect(coord.ledger.recordInference(model.id, await hop(a, 8), inferFlops(0) + 1)).rejects.toThrow(
        /claims \d+ FLOPs; this unit computes/,
      );
      await expect(
        coord.ledger.recordInference(
          model.id,
          { ...(await hop(a, 9)), sketch: [1, 2, 3, 4, 5, 6, 7, 8] },
          inferFlops(0),
        ),
      ).rejects.toThrow(/signature is not this peer/);
      const posted = await call('POST', `/api/models/${model.id}/receipts`, { receipts: [await hop(a, 10)] });
      expect(posted.json.rejected[0].reason).toMatch(/recorded by the inference requester/);
    },
  );

  it(
    'binds each peer to a wallet with EIP-712 + the peer signature; replays, expired and forged bindings are ' +
      'refused',
    async () => {
      const sign = async (
        p: (typeof peers)[number],
        w: (typeof wallets)[number],
        nonce: bigint,
        expiry: bigint,
        signer = w,
      ) => {
        const m = { peerId: p.id, wallet: w.address, nonce, expiry };
        return {
          peerId: p.id,
          wallet: w.address,
          nonce: String(nonce),
          expiry: String(expiry),
          walletSignature: await signer.signTypedData(bindingTypedData(anvil.chainId, m)),
          peerSignature: await signBindingAsPeer(p.key, anvil.chainId, m),
        };
      };
      const soon = BigInt(Math.floor(Date.now() / 1000) + 300);
      const n = await call('GET', `/api/wallets/${wallets[0].address}/nonce`);
      expect(n.json).toMatchObject({ nonce: '1', chainId: anvil.chainId });
      expect((await call('POST', '/api/bindings', await sign(peers[0], wallets[0], 1n, soon, wallets[1]))).status).toBe(
        401,
      ); // wrong wallet key
      expect((await call('POST', '/api/bindings', await sign(peers[0], wallets[0], 1n, 100n))).json.error).toMatch(
        /expired/,
      );
      const first = await sign(peers[0], wallets[0], 1n, soon);
      const bound = await call('POST', '/api/bindings', first);
      expect(bound.status).toBe(201);
      expect(bound.json.binding).toMatchObject({ peerId: peers[0].id, wallet: wallets[0].address });
      const replay = await call('POST', '/api/bindings', first);
      expect(replay.status).toBe(409);
      expect(replay.json.error).toMatch(/nonce 1 is not this wallet's next \(2\)/);
      // The same wallet may not hold a second stage through another peer id.
      const second = await call('POST', '/api/bindings', await sign(peers[1], wallets[0], 2n, soon));
      expect(second.status).toBe(409);
      expect(second.json.error).toMatch(/already holds stage 0/);
      expect((await call('POST', '/api/bindings', await sign(peers[1], wallets[1], 1n, soon))).status).toBe(201);
      expect((await call('GET', `/api/peers/${peers[1].id}/binding`)).json.binding.wallet).toBe(wallets[1].address);
    },
  );

  it(
    'settles an epoch: root on chain equals the published leaves, the holder claims exactly its verified ' + 'FLOPs',
    async () => {
      const path = `/api/models/${model.id}/epochs`;
      expect((await call('POST', path, {})).status).toBe(401);
      const unknown = await call('POST', path, { epoch: 5 }, { authorization: `Bearer ${ADMIN}` });
      expect(unknown.status).toBe(409);
      expect(unknown.json.error).toMatch(/unknown epoch 5: the next epoch of ledger-tiny to close is 1/);
      const settled = await call('POST', path, {}, { authorization: `Bearer ${ADMIN}` });
      expect(settled.status).toBe(201);
      const e = settled.json;
      expect(e).toMatchObject({ epoch: 1, throughStep: 1, status: 'challenge', wallets: 2 });
      // Four train units each, plus the one inference hop each served (recorded above, step 1).
      const perPeer = (p: (typeof peers)[number]) =>
        4 * receiptFlops(tinyConfig, specs[p.stage], model.batch, tinyConfig.context, 'train') + inferFlops(p.stage);
      expect(e.leaves).toEqual(
        expect.arrayContaining([
          { wallet: wallets[0].address, shares: String(perPeer(peers[0])) },
          { wallet: wallets[1].address, shares: String(perPeer(peers[1])) },
        ]),
      );
      const deployment = coord.chain!.info();
      const c = chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[2]);
      const addrs = deployment.models[model.id];
      expect((await readRoot(c, addrs, 1n)).root).toBe(e.root);
      // Nothing new to settle; a receipt for a settled step is refused.
      expect((await call('POST', path, {}, { authorization: `Bearer ${ADMIN}` })).status).toBe(409);
      const late = await call('POST', `/api/models/${model.id}/receipts`, {
        receipts: [await signReceipt(peers[0].key, receipt(peers[0], 1, 0, { round: 2 }))],
      });
      expect(late.json.rejected[0].reason).toMatch(/already settled/);

      const view = (await call('GET', `/api/wallets/${wallets[0].address}`)).json;
      const mine = view.models.find((m: { modelId: string }) => m.modelId === model.id);
      expect(mine.claim).toMatchObject({ epoch: 1, cumulative: String(perPeer(peers[0])) });
      await expect(
        claimShares(c, addrs, {
          epoch: 1n,
          account: wallets[0].address,
          cumulativeShares: BigInt(mine.claim.cumulative),
          proof: mine.claim.proof,
        }),
      ).rejects.toThrow(/NotClaimable/);
      const test = createTestClient({ mode: 'anvil', transport: http(anvil.rpcUrl) });
      await test.increaseTime({ seconds: 601 });
      await test.mine({ blocks: 1 });
      await claimShares(c, addrs, {
        epoch: 1n,
        account: wallets[0].address,
        cumulativeShares: BigInt(mine.claim.cumulative),
        proof: mine.claim.proof,
      });
      expect(await shareBalance(c, addrs, wallets[0].address)).toBe(BigInt(perPeer(peers[0])));
      expect(await claimedOf(c, addrs, wallets[0].address)).toBe(BigInt(perPeer(peers[0])));
      // The published receipts are what the leaves came from.
      const rs = (await call('GET', `${path}/1/receipts`)).json.receipts;
      expect(rs).toHaveLength(10);
      expect(
        rs.filter((r: { kind: string; sketch?: number[] }) => r.kind === 'infer' && r.sketch?.length === 8),
      ).toHaveLength(2);
    },
  );
  it("binds a receipt to the replica count its stage had when the step was recorded, not today's", async () => {
    for (const step of [5, 6])
      expect((await call('POST', `/api/models/${model.id}/metrics`, { step, loss: 2 })).status).toBe(201);
    const key = await generateKeyPair('Ed25519');
    const joined = await call('POST', '/api/peers/join', {
      peerId: peerIdFromPrivateKey(key).toString(),
      kind: 'node',
      tokensPerSecond: 100,
    });
    expect(joined.json.status).toBe('assigned');
    const stage: number = joined.json.assignment.stage;
    const holder = peers.find((p) => p.stage === stage)!;
    // Step 6 was recorded while the stage had one replica: a receipt arriving late (a durable outbox) still counts.
    const late = await call('POST', `/api/models/${model.id}/receipts`, {
      receipts: [await signReceipt(holder.key, receipt(holder, 6, 0))],
    });
    expect(late.json).toEqual({ accepted: 1, rejected: [] });
    // Step 7 is not recorded yet: taken, then held to the count its record gives (two here, the assignment's):
    // dropped then, as it would have been refused had it come after.
    const early = await call('POST', `/api/models/${model.id}/receipts`, {
      receipts: [await signReceipt(holder.key, receipt(holder, 7, 0))],
    });
    expect(early.json).toEqual({ accepted: 1, rejected: [] });
    expect((await call('POST', `/api/models/${model.id}/metrics`, { step: 7, loss: 2 })).status).toBe(201);
    const stored = new LedgerStore(coord.store).unsettledReceipts(model.id, 7).filter((r) => r.step === 7);
    expect(stored).toEqual([]);
    expect(logs.lines.some((l) => /receipt\(s\) of step 7 refused after the fact/.test(l.message))).toBe(true);
  });

  it('binds a receipt to the replica counts its step report gives (the round that trained it)', async () => {
    // The stage has two holders by now (the test before), yet the round that trained step 8 still had one: the
    // report says so, and the receipt claiming one replica counts (seen in `npm run chaos` after a rejoin).
    const url = `/api/models/${model.id}/metrics`;
    expect((await call('POST', url, { step: 8, loss: 2, replicas: [1, 1] })).status).toBe(201);
    const holder = peers[0];
    const ok = await call('POST', `/api/models/${model.id}/receipts`, {
      receipts: [await signReceipt(holder.key, receipt(holder, 8, 0))],
    });
    expect(ok.json).toEqual({ accepted: 1, rejected: [] });
    // Counts the stages never had, or not one per stage, are refused with the reason.
    const bad = [{ replicas: [1, 9] }, { replicas: [1] }, { replicas: [0, 1] }];
    for (const b of bad) expect((await call('POST', url, { step: 9, loss: 2, ...b })).status).toBe(400);
    expect((await call('POST', url, { step: 9, loss: 2, replicas: [1, 9] })).json.error).toMatch(
      /replicas\[1\] is 9; stage 1 never had more than \d/,
    );
  });
});
