import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { keccak256, toHex, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANVIL_KEYS, startAnvil, type Anvil } from '../../src/chain/anvil.ts';
import { EpochDistributorAbi } from '../../src/chain/artifacts.ts';
import {
  chainClients,
  escrowAccount,
  escrowDeposit,
  findRootTx,
  latestEpochOf,
  postRoot,
  readRoot,
} from '../../src/chain/client.ts';
import { deployTessera, registerModelOnChain, type Deployment } from '../../src/chain/deploy.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { epochStatus } from '../../src/coordinator/ledger.ts';
import { LedgerStore } from '../../src/coordinator/ledger-store.ts';
import { costOf } from '../../src/coordinator/payments.ts';
import { Store } from '../../src/coordinator/store.ts';
import { expectRevert, soleHolder } from '../chain/fixtures.ts';
import { memoryLog, tempDir, tinyModel } from './fixtures.ts';

const OWNER = ANVIL_KEYS[0];
const SETTLER = ANVIL_KEYS[1];
const PAYER = ANVIL_KEYS[5];
const payer = privateKeyToAccount(PAYER).address;

/**
 * Settlement and usage charges exactly once, against a real anvil: a settling process SIGKILLed between a mined
 * transaction and its record, then a coordinator started on the same database, which must reconcile with the
 * chain: the root recorded (not re-posted, not stuck at pending-chain), the payer charged once.
 */
describe('settlement and charges survive a SIGKILL at the worst moment (real anvil)', () => {
  const tmp = tempDir();
  let anvil: Anvil;
  let deployment: Deployment;
  const settler = () => chainClients(anvil.rpcUrl, anvil.chainId, SETTLER);

  beforeAll(async () => {
    anvil = await startAnvil();
    deployment = await deployTessera({
      rpcUrl: anvil.rpcUrl,
      chainId: anvil.chainId,
      deployerKey: OWNER,
      settlerAddress: privateKeyToAccount(SETTLER).address,
      challengeDelaySeconds: 3600,
    });
  });
  afterAll(async () => {
    await anvil?.stop();
    tmp.cleanup();
  });

  /** Runs the crashing settler on the database; it must die by SIGKILL at its crash point. */
  function crash(dbPath: string, mode: string): string {
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        './scripts/register.ts',
        'tests/coordinator/settle-crash-child.ts',
        JSON.stringify({ dbPath, deployment, settlerKey: SETTLER, mode }),
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.signal, out).toBe('SIGKILL');
    expect(out).toContain('dying');
    return out;
  }

  /** A database holding the model, with the given epochs closed (their roots not posted). */
  function dbWith(name: string, modelId: string, roots: Hex[]): string {
    const dbPath = join(tmp.dir, `${name}.db`);
    const store = Store.open(dbPath);
    store.insertModel(tinyModel(modelId));
    const ledger = new LedgerStore(store);
    roots.forEach((root, i) => addEpoch(ledger, modelId, i + 1, root));
    store.close();
    return dbPath;
  }

  function addEpoch(ledger: LedgerStore, modelId: string, epoch: number, root: Hex): void {
    ledger.insertEpoch({
      modelId,
      epoch,
      closedAt: 1000 + epoch,
      throughStep: epoch * 10,
      root,
      leaves: [],
      verdicts: [],
      audits: [],
      bindings: [],
    });
  }

  const rootOf = (s: string) => keccak256(toHex(s));

  it('a root mined, then SIGKILL before its record: recorded on restart, not re-posted; epoch 2 follows', async () => {
    const modelId = 'crash-root';
    const m = await registerModelOnChain(deployment, OWNER, { modelId, name: 'Crash root', symbol: 'CR' });
    const r1 = rootOf('epoch 1');
    const dbPath = dbWith('root', modelId, [r1]);

    crash(dbPath, 'root-mined');
    // The worst moment, as left: the root is on chain, the database says it is not.
    expect((await readRoot(settler(), m, 1n)).root).toBe(r1);
    const store = Store.open(dbPath);
    const before = new LedgerStore(store).getEpoch(modelId, 1)!;
    expect(before.txHash).toBeNull();
    expect(epochStatus(before, Date.now() / 1000)).toBe('pending-chain');
    store.close();
    // What a blind resend would do (the bug): revert, leaving the epoch pending-chain forever.
    await expectRevert(postRoot(settler(), m, 1n, r1), 'EpochNotIncreasing');

    const logs = memoryLog();
    const coord = await Coordinator.start({
      dbPath,
      log: logs.log,
      chain: { deployment, settlerKey: SETTLER, ownerKey: OWNER },
    });
    try {
      await coord.settlement.idle();
      const e1 = new LedgerStore(coord.store).getEpoch(modelId, 1)!;
      const minedIn = await findRootTx(settler(), m, 1n);
      expect(e1.txHash).toBe(minedIn);
      expect(e1.chainError).toBeNull();
      expect(epochStatus(e1, Date.now() / 1000)).toBe('challenge');
      expect(logs.lines.map((l) => l.message).join('\n')).toMatch(
        new RegExp(`settlement reconciled with the chain: recorded ${modelId}#1;`),
      );
      // The next epoch posts (a re-post of 1 would have reverted and blocked it).
      addEpoch(new LedgerStore(coord.store), modelId, 2, rootOf('epoch 2'));
      await coord.settlement.postPending();
      expect(new LedgerStore(coord.store).getEpoch(modelId, 2)!.txHash).toMatch(/^0x/);
      expect(await latestEpochOf(settler(), m)).toBe(2n);
      // Exactly one RootPosted per epoch on chain.
      const posted = await settler().publicClient.getContractEvents({
        address: m.distributor,
        abi: EpochDistributorAbi,
        eventName: 'RootPosted',
        fromBlock: 0n,
      });
      expect(posted.map((l) => l.args.epoch)).toEqual([1n, 2n]);
    } finally {
      await coord.stop();
    }
  });

  it('a failed epoch holds back only its own model, and is posted before the later epoch once retried', async () => {
    const a = 'retry-a';
    const b = 'retry-b';
    const ma = await registerModelOnChain(deployment, OWNER, { modelId: a, name: 'Retry A', symbol: 'RA' });
    const mb = await registerModelOnChain(deployment, OWNER, { modelId: b, name: 'Retry B', symbol: 'RB' });
    const dbPath = dbWith('retry', a, [rootOf('a1'), rootOf('a2')]);
    let store = Store.open(dbPath);
    store.insertModel(tinyModel(b));
    addEpoch(new LedgerStore(store), b, 1, rootOf('b1'));
    store.close();
    // Model a's epoch 1 cannot be posted yet: a zero root is refused on chain (EmptyRoot), as a chain refusing
    // it for a while would be. Its epoch 2 must wait; model b must not.
    store = Store.open(dbPath);
    store.connection
      .prepare('UPDATE epochs SET root = ? WHERE model_id = ? AND epoch = 1')
      .run(`0x${'00'.repeat(32)}`, a);
    store.close();
    const logs = memoryLog();
    const coord = await Coordinator.start({ dbPath, log: logs.log, chain: { deployment, settlerKey: SETTLER } });
    try {
      await coord.settlement.idle();
      await coord.settlement.postPending();
      const ledger = new LedgerStore(coord.store);
      expect(ledger.getEpoch(a, 1)!.chainError).toMatch(/EmptyRoot/);
      expect(ledger.getEpoch(a, 2)!.txHash).toBeNull();
      expect(await latestEpochOf(settler(), ma)).toBe(0n);
      expect(ledger.getEpoch(b, 1)!.txHash).toMatch(/^0x/);
      expect(await latestEpochOf(settler(), mb)).toBe(1n);
      // The cause goes away (the right root): the retry posts 1, then 2.
      coord.store.connection
        .prepare('UPDATE epochs SET root = ? WHERE model_id = ? AND epoch = 1')
        .run(rootOf('a1'), a);
      await coord.settlement.postPending();
      expect(ledger.getEpoch(a, 1)!.txHash).toMatch(/^0x/);
      expect(ledger.getEpoch(a, 2)!.txHash).toMatch(/^0x/);
      expect((await readRoot(settler(), ma, 1n)).root).toBe(rootOf('a1'));
      expect((await readRoot(settler(), ma, 2n)).root).toBe(rootOf('a2'));
    } finally {
      await coord.stop();
    }
  });

  /** A database with the model and `n` served requests of `payer` (metered, not charged). */
  async function usageDb(name: string, modelId: string, n: number): Promise<{ dbPath: string; each: bigint }> {
    const m = await registerModelOnChain(deployment, OWNER, {
      modelId,
      name: `Pay ${name}`,
      symbol: 'PY',
      challengeDelay: 0,
    });
    // Revenue needs share holders: epoch 1 gives one holder all shares.
    await soleHolder(settler(), chainClients(anvil.rpcUrl, anvil.chainId, ANVIL_KEYS[2]), m, 1000n);
    const dbPath = join(tmp.dir, `${name}.db`);
    const store = Store.open(dbPath);
    const model = tinyModel(modelId);
    store.insertModel(model);
    const each = costOf(model, 10);
    for (let i = 0; i < n; i++) addUsage(store, modelId, `${name}-${i}`, each);
    store.close();
    return { dbPath, each };
  }

  function addUsage(store: Store, modelId: string, requestId: string, cost: bigint): void {
    store.connection
      .prepare(
        'INSERT INTO usage (request_id, payer, model_id, prompt_tokens, completion_tokens, cost_wei, at) ' +
          'VALUES (?, ?, ?, 500, 500, ?, 1)',
      )
      .run(`cmpl-${requestId}-${Math.random()}`, payer, modelId, cost.toString());
  }

  const balance = async () => (await escrowAccount(settler(), deployment.escrow!, payer)).balance;

  it('a charge mined then SIGKILL before the rows are marked: on restart the payer has paid exactly once', async () => {
    const modelId = 'crash-charge';
    const { dbPath, each } = await usageDb('charge', modelId, 3);
    await escrowDeposit(chainClients(anvil.rpcUrl, anvil.chainId, PAYER), deployment.escrow!, 10n ** 18n);
    const start = await balance();

    crash(dbPath, 'charge-mined');
    expect(await balance()).toBe(start - 3n * each); // mined
    const store = Store.open(dbPath);
    const rows = store.connection.prepare('SELECT charge_tx, charge_batch FROM usage').all() as Array<{
      charge_tx: string | null;
      charge_batch: string | null;
    }>;
    expect(rows.every((r) => r.charge_tx === null && r.charge_batch !== null)).toBe(true); // unmarked, in flight
    // A request served after the crash, before the restart: a batch of its own.
    addUsage(store, modelId, 'after', each);
    store.close();

    const logs = memoryLog();
    const coord = await Coordinator.start({ dbPath, log: logs.log, chain: { deployment, settlerKey: SETTLER } });
    try {
      await coord.settlement.idle();
      await coord.payments.idle();
      expect(logs.lines.map((l) => l.message).join('\n')).toMatch(/1 batch\(es\) found charged and marked/);
      expect(await coord.payments.chargeUsage()).toBe(1); // the new request only
      expect(await coord.payments.chargeUsage()).toBe(0);
      expect(await balance()).toBe(start - 4n * each);
      const txs = coord.payments.usageOf(payer).map((u) => u.chargeTx);
      expect(txs.every((t) => t?.startsWith('0x'))).toBe(true);
      expect(new Set(txs).size).toBe(2);
    } finally {
      await coord.stop();
    }
  });

  it('SIGKILL after the batch is written and before the charge is sent: charged once on restart', async () => {
    const modelId = 'crash-unsent';
    const { dbPath, each } = await usageDb('unsent', modelId, 2);
    const start = await balance();
    crash(dbPath, 'charge-unsent');
    expect(await balance()).toBe(start);
    const coord = await Coordinator.start({
      dbPath,
      log: memoryLog().log,
      chain: { deployment, settlerKey: SETTLER },
    });
    try {
      await coord.payments.idle();
      expect(await coord.payments.chargeUsage()).toBe(2);
      expect(await coord.payments.chargeUsage()).toBe(0);
      expect(await balance()).toBe(start - 2n * each);
    } finally {
      await coord.stop();
    }
  });

  it('a chain node SIGKILLed before dumping a posted root: on restart the root is requeued, posted again', async () => {
    const statePath = join(tmp.dir, 'lossy-state.json');
    let node = await startAnvil({ statePath });
    const port = Number(new URL(node.rpcUrl).port);
    const d = await deployTessera({
      rpcUrl: node.rpcUrl,
      chainId: node.chainId,
      deployerKey: OWNER,
      settlerAddress: privateKeyToAccount(SETTLER).address,
      challengeDelaySeconds: 3600,
    });
    const modelId = 'lossy';
    const m = await registerModelOnChain(d, OWNER, { modelId, name: 'Lossy', symbol: 'LO' });
    await node.stop(); // a clean stop: the contracts are in the state file
    node = await startAnvil({ statePath, port });
    try {
      const dbPath = dbWith('lossy', modelId, [rootOf('lossy 1')]);
      let coord = await Coordinator.start({
        dbPath,
        log: memoryLog().log,
        chain: { deployment: d, settlerKey: SETTLER },
      });
      await coord.settlement.idle();
      await coord.settlement.postPending();
      const lostTx = new LedgerStore(coord.store).getEpoch(modelId, 1)!.txHash;
      expect(lostTx).toMatch(/^0x/);
      await coord.stop();
      // The node dies without dumping: the root's block is gone when it comes back.
      process.kill(node.pid, 'SIGKILL');
      await node.stop();
      node = await startAnvil({ statePath, port });
      const c = chainClients(node.rpcUrl, node.chainId, SETTLER);
      expect((await readRoot(c, m, 1n)).postedAt).toBe(0n);

      const logs = memoryLog();
      coord = await Coordinator.start({ dbPath, log: logs.log, chain: { deployment: d, settlerKey: SETTLER } });
      try {
        await coord.settlement.idle();
        expect(logs.lines.map((l) => l.message).join('\n')).toMatch(/requeued lossy#1;/);
        await coord.settlement.postPending();
        const e = new LedgerStore(coord.store).getEpoch(modelId, 1)!;
        expect(e.txHash).toMatch(/^0x/);
        // The same signed transaction again (same nonce and data), so even its hash matches: now mined for real.
        expect(await c.publicClient.getTransactionReceipt({ hash: e.txHash as Hex })).toMatchObject({
          status: 'success',
        });
        expect((await readRoot(c, m, 1n)).root).toBe(rootOf('lossy 1'));
      } finally {
        await coord.stop();
      }
    } finally {
      await node.stop();
    }
  });
});
