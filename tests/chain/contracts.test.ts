import { encodeAbiParameters, keccak256, parseEther, toFunctionSelector, zeroAddress } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelRegistryAbi, RevenueVaultAbi, ShareTokenAbi } from '../../src/chain/artifacts.ts';
import {
  claimShares,
  claimedOf,
  depositEth,
  depositToken,
  latestEpochOf,
  postRoot,
  readRoot,
  revokeRoot,
  sendWrite,
  shareBalance,
  withdrawEth,
  withdrawableOf,
} from '../../src/chain/client.ts';
import { compileContracts } from '../../src/chain/compile.ts';
import { deployContract, registerModelOnChain } from '../../src/chain/deploy.ts';
import { ANVIL_KEYS } from '../../src/chain/anvil.ts';
import { addressOf, chainFixture, expectRevert, OWNER_KEY, shareTree, type ChainFixture } from './fixtures.ts';

/** Contract behaviour against a real anvil: settlement, revocation, registry, vault guards, reentrancy. */
describe('Tessera contracts', () => {
  let f: ChainFixture;
  const alice = addressOf(ANVIL_KEYS[2]);
  const bob = addressOf(ANVIL_KEYS[3]);
  const carol = addressOf(ANVIL_KEYS[4]);

  beforeAll(async () => {
    f = await chainFixture();
  });
  afterAll(() => f?.anvil.stop());

  it(
    'an @openzeppelin/merkle-tree leaf verifies on chain and the claim mints exactly the cumulative ' + 'amount',
    async () => {
      const m = await f.newModel();
      const t = shareTree([
        [alice, 7n * 10n ** 18n],
        [bob, 3n],
        [carol, 12345n],
      ]);
      // The contract's leaf encoding, written out with viem, equals the library's.
      const ours = keccak256(keccak256(encodeAbiParameters([{ type: 'address' }, { type: 'uint256' }], [bob, 3n])));
      expect(t.leaf(bob, 3n)).toBe(ours);

      await postRoot(f.as(1), m, 1n, t.root);
      const r = await readRoot(f.as(1), m, 1n);
      expect(r.root).toBe(t.root);
      expect(r.claimable).toBe(false);
      expect(r.claimableAt).toBe(r.postedAt + 3600n);
      await f.advance(3600);
      expect((await readRoot(f.as(1), m, 1n)).claimable).toBe(true);

      // Anyone (here carol's key) may submit bob's claim; the shares go to bob.
      await claimShares(f.as(4), m, { epoch: 1n, account: bob, cumulativeShares: 3n, proof: t.proof(bob) });
      await claimShares(f.as(4), m, {
        epoch: 1n,
        account: alice,
        cumulativeShares: 7n * 10n ** 18n,
        proof: t.proof(alice),
      });
      expect(await shareBalance(f.as(0), m, bob)).toBe(3n);
      expect(await shareBalance(f.as(0), m, alice)).toBe(7n * 10n ** 18n);
      expect(await claimedOf(f.as(0), m, bob)).toBe(3n);
      await expectRevert(
        claimShares(f.as(4), m, { epoch: 1n, account: bob, cumulativeShares: 3n, proof: t.proof(bob) }),
        'NothingToClaim',
      );

      // A later epoch carries cumulative totals: only the difference is minted.
      const t2 = shareTree([
        [alice, 7n * 10n ** 18n],
        [bob, 10n],
      ]);
      await postRoot(f.as(1), m, 2n, t2.root);
      await f.advance(3600);
      await claimShares(f.as(3), m, { epoch: 2n, account: bob, cumulativeShares: 10n, proof: t2.proof(bob) });
      expect(await shareBalance(f.as(0), m, bob)).toBe(10n);
      // An older epoch with a smaller cumulative total can no longer mint anything.
      await expectRevert(
        claimShares(f.as(3), m, { epoch: 1n, account: bob, cumulativeShares: 3n, proof: t.proof(bob) }),
        'NothingToClaim',
      );
    },
  );

  it(
    'rejects wrong proofs and wrong amounts, roots from anyone but the settler, early claims and ' +
      'non-increasing epochs',
    async () => {
      const m = await f.newModel();
      const t = shareTree([
        [alice, 100n],
        [bob, 200n],
      ]);
      await expectRevert(postRoot(f.as(2), m, 1n, t.root), 'NotSettler');
      await postRoot(f.as(1), m, 1n, t.root);
      await expectRevert(
        claimShares(f.as(2), m, { epoch: 1n, account: alice, cumulativeShares: 100n, proof: t.proof(alice) }),
        'NotClaimable',
      );
      await f.advance(3599);
      await expectRevert(
        claimShares(f.as(2), m, { epoch: 1n, account: alice, cumulativeShares: 100n, proof: t.proof(alice) }),
        'NotClaimable',
      );
      await f.advance(1);
      await expectRevert(
        claimShares(f.as(2), m, { epoch: 1n, account: alice, cumulativeShares: 101n, proof: t.proof(alice) }),
        'InvalidProof',
      );
      await expectRevert(
        claimShares(f.as(2), m, { epoch: 1n, account: alice, cumulativeShares: 100n, proof: t.proof(bob) }),
        'InvalidProof',
      );
      await expectRevert(
        claimShares(f.as(2), m, { epoch: 1n, account: carol, cumulativeShares: 100n, proof: t.proof(alice) }),
        'InvalidProof',
      );
      await expectRevert(
        claimShares(f.as(2), m, { epoch: 2n, account: alice, cumulativeShares: 100n, proof: t.proof(alice) }),
        'NotClaimable',
      );
      await claimShares(f.as(2), m, { epoch: 1n, account: alice, cumulativeShares: 100n, proof: t.proof(alice) });

      await expectRevert(postRoot(f.as(1), m, 1n, t.root), 'EpochNotIncreasing');
      await expectRevert(postRoot(f.as(1), m, 0n, t.root), 'EpochNotIncreasing');
      await postRoot(f.as(1), m, 5n, t.root);
      await expectRevert(postRoot(f.as(1), m, 4n, t.root), 'EpochNotIncreasing');
      await expectRevert(postRoot(f.as(1), m, 6n, `0x${'00'.repeat(32)}`), 'EmptyRoot');
      expect(await latestEpochOf(f.as(0), m)).toBe(5n);
    },
  );

  it('revocation: only the registry owner, only while pending; a revoked root cannot be claimed', async () => {
    const m = await f.newModel();
    const t = shareTree([
      [alice, 50n],
      [bob, 60n],
    ]);
    await postRoot(f.as(1), m, 1n, t.root);
    await expectRevert(revokeRoot(f.as(1), m, 1n), 'NotRegistryOwner');
    await expectRevert(revokeRoot(f.as(0), m, 2n), 'UnknownEpoch');
    await revokeRoot(f.as(0), m, 1n);
    await expectRevert(revokeRoot(f.as(0), m, 1n), 'AlreadyRevoked');
    await f.advance(3600);
    const r = await readRoot(f.as(0), m, 1n);
    expect(r.revoked).toBe(true);
    expect(r.claimable).toBe(false);
    await expectRevert(
      claimShares(f.as(2), m, { epoch: 1n, account: alice, cumulativeShares: 50n, proof: t.proof(alice) }),
      'NotClaimable',
    );

    // The corrected root goes in as the next epoch; once its window has passed it can no longer be revoked.
    await postRoot(f.as(1), m, 2n, t.root);
    await f.advance(3600);
    await expectRevert(revokeRoot(f.as(0), m, 2n), 'ChallengeWindowClosed');
    await claimShares(f.as(2), m, { epoch: 2n, account: alice, cumulativeShares: 50n, proof: t.proof(alice) });
    expect(await shareBalance(f.as(0), m, alice)).toBe(50n);
  });

  it('registry: only the owner registers, a model id once; lists ids; unknown ids read as zero', async () => {
    const d = f.deployment;
    await expectRevert(
      registerModelOnChain({ ...d, models: {} }, ANVIL_KEYS[5], { modelId: 'x', name: 'X', symbol: 'X' }),
      'OwnableUnauthorizedAccount',
    );
    const m = await registerModelOnChain(d, OWNER_KEY, { modelId: 'dup', name: 'Dup', symbol: 'DUP' });
    await expectRevert(
      registerModelOnChain(d, OWNER_KEY, { modelId: 'dup', name: 'Again', symbol: 'A' }),
      'ModelExists',
    );
    await expectRevert(registerModelOnChain(d, OWNER_KEY, { modelId: '', name: 'E', symbol: 'E' }), 'EmptyModelId');
    const read = f.as(0).publicClient;
    expect(
      await read.readContract({ address: d.registry, abi: ModelRegistryAbi, functionName: 'model', args: ['nope'] }),
    ).toEqual([zeroAddress, zeroAddress, zeroAddress]);
    expect(await read.readContract({ address: d.registry, abi: ModelRegistryAbi, functionName: 'modelIds' })).toContain(
      'dup',
    );
    expect(await read.readContract({ address: m.token, abi: ShareTokenAbi, functionName: 'decimals' })).toBe(18);
    expect(await read.readContract({ address: m.token, abi: ShareTokenAbi, functionName: 'symbol' })).toBe('DUP');
    expect(await read.readContract({ address: m.vault, abi: RevenueVaultAbi, functionName: 'paymentToken' })).toBe(
      d.paymentToken,
    );
  });

  it(
    'share token and vault guards: deposits need shares, only the distributor mints, only the token moves ' +
      'corrections',
    async () => {
      const m = await f.newModel();
      await expectRevert(depositEth(f.as(6), m, 1000n), 'NoShares');
      await expectRevert(depositToken(f.as(6), m, 0n), 'NoShares');
      await expectRevert(
        sendWrite(f.as(2), { address: m.token, abi: ShareTokenAbi, functionName: 'mint', args: [alice, 1n] }),
        'NotDistributor',
      );
      await expectRevert(
        sendWrite(f.as(0), { address: m.token, abi: ShareTokenAbi, functionName: 'wire', args: [alice, alice] }),
        'NotWirer',
      );
      await expectRevert(
        sendWrite(f.as(2), {
          address: m.vault,
          abi: RevenueVaultAbi,
          functionName: 'onBalanceChange',
          args: [zeroAddress, alice, 1n],
        }),
        'NotShareToken',
      );
      await expectRevert(withdrawEth(f.as(2), m), 'NothingToWithdraw');
    },
  );

  it(
    'reentrancy: an attacker re-entering withdrawEth from receive() fails and gets exactly its share ' + 'once',
    async () => {
      const m = await f.newModel(0);
      const { Reentrant } = compileContracts(['contracts/test/Reentrant.sol']);
      const attacker = (await deployContract(f.as(7), Reentrant.abi, Reentrant.bytecode, [m.vault])).address;
      // Attacker 1/4 of the shares, alice 3/4; 1 ETH + 3 wei of revenue.
      const t = shareTree([
        [attacker, 1000n],
        [alice, 3000n],
      ]);
      await postRoot(f.as(1), m, 1n, t.root);
      await claimShares(f.as(7), m, {
        epoch: 1n,
        account: attacker,
        cumulativeShares: 1000n,
        proof: t.proof(attacker),
      });
      await claimShares(f.as(7), m, { epoch: 1n, account: alice, cumulativeShares: 3000n, proof: t.proof(alice) });
      await depositEth(f.as(6), m, parseEther('1') + 3n);
      const share = (await withdrawableOf(f.as(0), m, attacker)).eth;
      expect(share).toBe(parseEther('0.25'));

      const read = f.as(0).publicClient;
      const vaultBefore = await read.getBalance({ address: m.vault });
      await sendWrite(f.as(7), { address: attacker, abi: Reentrant.abi, functionName: 'attack' });
      const call = (functionName: string) =>
        read.readContract({ address: attacker, abi: Reentrant.abi, functionName }) as Promise<unknown>;
      expect(await call('attempts')).toBe(1n);
      expect(await call('reentrySucceeded')).toBe(false);
      expect(await call('reentryError')).toBe(toFunctionSelector('ReentrancyGuardReentrantCall()'));
      expect(await read.getBalance({ address: attacker })).toBe(share);
      expect(await read.getBalance({ address: m.vault })).toBe(vaultBefore - share);
      expect((await withdrawableOf(f.as(0), m, attacker)).eth).toBe(0n);
      expect((await withdrawableOf(f.as(0), m, alice)).eth).toBe(parseEther('0.75') + 2n);
      // A second attack finds nothing: the first withdrawal was booked before the ETH left.
      await expectRevert(
        sendWrite(f.as(7), { address: attacker, abi: Reentrant.abi, functionName: 'attack' }),
        'NothingToWithdraw',
      );
    },
  );
});
