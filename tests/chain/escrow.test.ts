import { createPublicClient, http, parseEther, type Hex } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  escrowAccount,
  escrowCharge,
  escrowCharged,
  escrowDeposit,
  escrowRequestWithdrawal,
  escrowWithdraw,
  findChargeTx,
  withdrawableOf,
} from '../../src/chain/client.ts';
import { addressOf, chainFixture, expectRevert, soleHolder, type ChainFixture } from './fixtures.ts';
import { ANVIL_KEYS } from '../../src/chain/anvil.ts';

/** The inference escrow against a real anvil: deposits, charges into a model's vault, delayed withdrawals. */
describe('InferenceEscrow', () => {
  let fx: ChainFixture;
  beforeAll(async () => {
    fx = await chainFixture();
  });
  afterAll(async () => {
    await fx?.anvil.stop();
  });
  // Each charge names its usage: the escrow takes an identifier once.
  let n = 0;
  const nextUsage = () => `0x${(++n).toString(16).padStart(64, '0')}` as Hex;

  it('charges move exactly the amount into the vault, where the holder can withdraw it', async () => {
    const escrow = fx.deployment.escrow!;
    const model = await fx.newModel(0);
    const holder = addressOf(ANVIL_KEYS[2]);
    await soleHolder(fx.as(1), fx.as(2), model, 1000n);
    const payer = fx.as(5);
    await escrowDeposit(payer, escrow, parseEther('1'));
    expect((await escrowAccount(payer, escrow, payer.account!.address)).balance).toBe(parseEther('1'));
    await escrowCharge(fx.as(1), escrow, payer.account!.address, model.vault, 12345n, nextUsage());
    expect((await escrowAccount(payer, escrow, payer.account!.address)).balance).toBe(parseEther('1') - 12345n);
    // The vault's dividend-per-share arithmetic (2^128 magnitude) leaves at most a wei of dust per holder.
    const M = 2n ** 128n;
    expect((await withdrawableOf(fx.as(2), model, holder)).eth).toBe((1000n * ((12345n * M) / 1000n)) / M);
    // Only the settlement key charges, and never more than the balance.
    await expectRevert(
      escrowCharge(fx.as(3), escrow, payer.account!.address, model.vault, 1n, nextUsage()),
      'NotSettler',
    );
    await expectRevert(
      escrowCharge(fx.as(1), escrow, payer.account!.address, model.vault, parseEther('2'), nextUsage()),
      'InsufficientBalance',
    );
  });

  it('a withdrawal waits out the announced delay and is capped by later charges', async () => {
    const escrow = fx.deployment.escrow!;
    const model = await fx.newModel(0);
    await soleHolder(fx.as(1), fx.as(3), model, 1n);
    const payer = fx.as(6);
    const me = payer.account!.address;
    await escrowDeposit(payer, escrow, 1000n);
    await expectRevert(escrowRequestWithdrawal(payer, escrow, 1001n), 'InsufficientBalance');
    await escrowRequestWithdrawal(payer, escrow, 1000n);
    await expectRevert(escrowWithdraw(payer, escrow), 'StillLocked');
    // Usage served before the announcement is still charged during the delay.
    await escrowCharge(fx.as(1), escrow, me, model.vault, 400n, nextUsage());
    await fx.advance(3601);
    const pub = createPublicClient({ transport: http(fx.anvil.rpcUrl) });
    const before = await pub.getBalance({ address: me });
    const rc = await escrowWithdraw(payer, escrow);
    expect((await pub.getBalance({ address: me })) - before + rc.gasUsed * rc.effectiveGasPrice).toBe(600n);
    expect((await escrowAccount(payer, escrow, me)).balance).toBe(0n);
    await expectRevert(escrowWithdraw(payer, escrow), 'NothingToWithdraw');
  });

  it('a usage identifier is charged once: a resend reverts AlreadyCharged and moves nothing', async () => {
    const escrow = fx.deployment.escrow!;
    const model = await fx.newModel(0);
    await soleHolder(fx.as(1), fx.as(2), model, 10n);
    const payer = fx.as(7);
    const me = payer.account!.address;
    await escrowDeposit(payer, escrow, 10_000n);
    const usage = nextUsage();
    const settler = fx.as(1);
    expect(await escrowCharged(settler, escrow, usage)).toBe(false);
    const rc = await escrowCharge(settler, escrow, me, model.vault, 700n, usage);
    expect(await escrowCharged(settler, escrow, usage)).toBe(true);
    expect(await findChargeTx(settler, escrow, me, usage)).toBe(rc.transactionHash);
    const vaultBefore = await createPublicClient({ transport: http(fx.anvil.rpcUrl) }).getBalance({
      address: model.vault,
    });
    // The same identifier again (the settlement key retrying after a crash), even with another amount: refused.
    await expectRevert(escrowCharge(settler, escrow, me, model.vault, 700n, usage), 'AlreadyCharged');
    await expectRevert(escrowCharge(settler, escrow, me, model.vault, 1n, usage), 'AlreadyCharged');
    expect((await escrowAccount(payer, escrow, me)).balance).toBe(10_000n - 700n);
    expect(await createPublicClient({ transport: http(fx.anvil.rpcUrl) }).getBalance({ address: model.vault })).toBe(
      vaultBefore,
    );
    // Another identifier is another charge.
    await escrowCharge(settler, escrow, me, model.vault, 300n, nextUsage());
    expect((await escrowAccount(payer, escrow, me)).balance).toBe(9_000n);
  });
});
