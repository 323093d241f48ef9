import { maxUint256, type Address } from 'viem';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANVIL_KEYS } from '../../src/chain/anvil.ts';
import { RevenueVaultAbi, ShareTokenAbi, TestTokenAbi } from '../../src/chain/artifacts.ts';
import {
  claimShares,
  depositEth,
  depositToken,
  postRoot,
  sendWrite,
  withdrawEth,
  withdrawToken,
  type ChainClients,
} from '../../src/chain/client.ts';
import type { ModelAddresses } from '../../src/chain/deploy.ts';
import { addressOf, chainFixture, expectRevert, shareTree, type ChainFixture } from './fixtures.ts';
import { Rng } from '../../src/ops/rng.ts';

/**
 * Property: under random claims, transfers, ETH and token deposits and withdrawals, every holder's withdrawable
 * ETH and token equal, to the wei, a BigInt model of the same integer accounting, and the vault holds exactly
 * deposits − withdrawals.
 *
 * Dust bound (what the vault holds beyond the sum of everyone's withdrawable). Each deposit d at supply S adds
 * floor(d·2^128/S) to P, losing r = d·2^128 mod S < S magnified units. Corrections keep, for every holder,
 * P·balance + correction = Σ_deposits increment·balance-at-that-deposit exactly, so Σ_holders of those equals
 * Σ_deposits (d·2^128 − r). A holder's cumulative earnings floor that by 2^128, losing a fraction < 1 wei, and
 * withdrawals subtract whole earnings (no further rounding). Hence
 *   dust = Σ r / 2^128 + Σ_holders fractions < deposits·maxSupply/2^128 + holders,
 * and since supply here stays < 2^80 the first term is < 1: dust ≤ holders (5), however many deposits or
 * withdrawals. (It is not bounded by the number of deposits: 4 wei over 5 equal holders leaves 4 wei of dust.)
 */
const MAG = 2n ** 128n;
const HOLDERS = 5;
const RUNS = 3;
const ACTIONS = 60;

function rng(seed: number) {
  // src/ops/rng.ts's mulberry32: nearby seeds give unrelated streams.
  const gen = new Rng(seed);
  const next = () => gen.next();
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  /** Log-uniform: as many 1-wei edge cases as large amounts. */
  const big = (maxBits: number) => {
    const bits = int(0, maxBits);
    let v = 0n;
    for (let i = 0; i < bits; i += 16) v = (v << 16n) | BigInt(int(0, 0xffff));
    return (v % (1n << BigInt(bits))) + 1n;
  };
  return { next, int, big };
}

/** The vault's accounting for one asset, in BigInt. */
class Book {
  perShare = 0n;
  deposited = 0n;
  withdrawnTotal = 0n;
  deposits = 0;
  correction = new Array<bigint>(HOLDERS).fill(0n);
  withdrawn = new Array<bigint>(HOLDERS).fill(0n);
  deposit(amount: bigint, supply: bigint) {
    this.perShare += (amount * MAG) / supply;
    this.deposited += amount;
    this.deposits++;
  }
  move(from: number | null, to: number | null, amount: bigint) {
    if (from !== null) this.correction[from] += this.perShare * amount;
    if (to !== null) this.correction[to] -= this.perShare * amount;
  }
  withdrawable(h: number, balance: bigint) {
    return (this.perShare * balance + this.correction[h]) / MAG - this.withdrawn[h];
  }
  take(h: number, balance: bigint) {
    const w = this.withdrawable(h, balance);
    this.withdrawn[h] += w;
    this.withdrawnTotal += w;
    return w;
  }
}

describe('RevenueVault accounting (property)', () => {
  let f: ChainFixture;
  const holderIdx = [2, 3, 4, 5, 6];
  const holders = holderIdx.map((i) => addressOf(ANVIL_KEYS[i]));
  const DEPOSITOR = 7;

  beforeAll(async () => {
    f = await chainFixture();
    const dep = f.as(DEPOSITOR);
    await sendWrite(dep, {
      address: f.deployment.paymentToken,
      abi: TestTokenAbi,
      functionName: 'mint',
      args: [dep.account!.address, 2n ** 200n],
    });
  });
  afterAll(() => f?.anvil.stop());

  for (let run = 0; run < RUNS; run++) {
    it(`seed ${run + 1}: ${ACTIONS} random actions over ${HOLDERS} holders match the reference exactly`, async () => {
      const r = rng(run + 1);
      const m = await f.newModel(0);
      const dep = f.as(DEPOSITOR);
      await sendWrite(dep, {
        address: f.deployment.paymentToken,
        abi: TestTokenAbi,
        functionName: 'approve',
        args: [m.vault, maxUint256],
      });
      const read = dep.publicClient;
      const bal = new Array<bigint>(HOLDERS).fill(0n);
      const entitled = new Array<bigint>(HOLDERS).fill(0n);
      const claimed = new Array<bigint>(HOLDERS).fill(0n);
      const eth = new Book();
      const tok = new Book();
      let supply = 0n;
      let epoch = 0n;
      let tree: ReturnType<typeof shareTree> | null = null;
      let maxDust = 0n;
      const log: string[] = [];

      // Mostly pick a holder for whom the action does something; sometimes anyone, to hit the revert paths.
      const pickWhere = (ok: (h: number) => boolean) => {
        const good = [...Array(HOLDERS).keys()].filter(ok);
        return good.length > 0 && r.next() < 0.85 ? good[r.int(0, good.length - 1)] : r.int(0, HOLDERS - 1);
      };
      const WEIGHTS = [
        ['settle', 2],
        ['claim', 3],
        ['transfer', 3],
        ['depositEth', 2],
        ['depositToken', 2],
        ['withdrawEth', 2],
        ['withdrawToken', 2],
      ] as const;
      const pickKind = () => {
        let x = r.int(
          1,
          WEIGHTS.reduce((s, [, w]) => s + w, 0),
        );
        for (const [k, w] of WEIGHTS) if ((x -= w) <= 0) return k;
        throw new Error('unreachable');
      };

      const act = async () => {
        const kind = pickKind();
        const h =
          kind === 'claim'
            ? pickWhere((i) => entitled[i] > claimed[i])
            : kind === 'withdrawEth'
              ? pickWhere((i) => eth.withdrawable(i, bal[i]) > 0n)
              : kind === 'withdrawToken'
                ? pickWhere((i) => tok.withdrawable(i, bal[i]) > 0n)
                : pickWhere((i) => bal[i] > 0n);
        const c: ChainClients = f.as(holderIdx[h]);
        if (kind === 'settle') {
          // Settlement: some holders earn more; a new cumulative root.
          for (let k = r.int(1, 3); k > 0; k--) entitled[r.int(0, HOLDERS - 1)] += r.big(70);
          tree = shareTree(holders.map((a, i) => [a, entitled[i]] as [Address, bigint]));
          await postRoot(f.as(1), m, ++epoch, tree.root);
          log.push(`settle epoch ${epoch}`);
        } else if (kind === 'claim') {
          // Claim (submitted by someone else) for h against the latest root.
          if (!tree) return;
          const claim = { epoch, account: holders[h], cumulativeShares: entitled[h], proof: tree.proof(holders[h]) };
          if (entitled[h] === claimed[h])
            return void (await expectRevert(claimShares(dep, m, claim), 'NothingToClaim'));
          const amount = entitled[h] - claimed[h];
          await claimShares(dep, m, claim);
          claimed[h] = entitled[h];
          for (const b of [eth, tok]) b.move(null, h, amount);
          bal[h] += amount;
          supply += amount;
          log.push(`claim ${h} +${amount}`);
        } else if (kind === 'transfer') {
          const to = r.int(0, HOLDERS - 1);
          const pick = r.int(0, 3);
          const amount =
            bal[h] === 0n ? 0n : pick === 0 ? bal[h] : pick === 1 ? 1n : pick === 2 ? 0n : r.big(70) % (bal[h] + 1n);
          await sendWrite(c, {
            address: m.token,
            abi: ShareTokenAbi,
            functionName: 'transfer',
            args: [holders[to], amount],
          });
          for (const b of [eth, tok]) b.move(h, to, amount);
          bal[h] -= amount;
          bal[to] += amount;
          log.push(`transfer ${h}->${to} ${amount}`);
        } else if (kind === 'depositEth' || kind === 'depositToken') {
          const isEth = kind === 'depositEth';
          const amount = isEth ? r.big(62) : r.big(48);
          const p = isEth ? depositEth(dep, m, amount) : depositToken(dep, m, amount);
          if (supply === 0n) return void (await expectRevert(p, 'NoShares'));
          await p;
          (isEth ? eth : tok).deposit(amount, supply);
          log.push(`deposit ${isEth ? 'eth' : 'token'} ${amount}`);
        } else {
          const isEth = kind === 'withdrawEth';
          const book = isEth ? eth : tok;
          const p = isEth ? withdrawEth(c, m) : withdrawToken(c, m);
          if (book.withdrawable(h, bal[h]) === 0n) return void (await expectRevert(p, 'NothingToWithdraw'));
          const before = isEth ? await read.getBalance({ address: holders[h] }) : await tokenBalance(holders[h]);
          const receipt = await p;
          const w = book.take(h, bal[h]);
          const after = isEth ? await read.getBalance({ address: holders[h] }) : await tokenBalance(holders[h]);
          const gas = isEth ? receipt.gasUsed * receipt.effectiveGasPrice : 0n;
          expect(after - before + gas, `holder ${h} received its withdrawable`).toBe(w);
          log.push(`withdraw ${isEth ? 'eth' : 'token'} ${h} ${w}`);
        }
      };
      const tokenBalance = (a: Address) =>
        read.readContract({
          address: f.deployment.paymentToken,
          abi: TestTokenAbi,
          functionName: 'balanceOf',
          args: [a],
        });

      const check = async (step: number) => {
        const where = `seed ${run + 1} step ${step}: ${log.slice(-3).join('; ')}`;
        const [onchain, vaultEth, vaultTok] = await Promise.all([
          Promise.all(holders.map((a) => readHolder(read, m, a))),
          read.getBalance({ address: m.vault }),
          tokenBalance(m.vault),
        ]);
        for (let h = 0; h < HOLDERS; h++) {
          expect(onchain[h].shares, `${where}: shares of ${h}`).toBe(bal[h]);
          expect(onchain[h].eth, `${where}: withdrawable ETH of ${h}`).toBe(eth.withdrawable(h, bal[h]));
          expect(onchain[h].token, `${where}: withdrawable token of ${h}`).toBe(tok.withdrawable(h, bal[h]));
        }
        for (const [book, held, key] of [
          [eth, vaultEth, 'eth'],
          [tok, vaultTok, 'token'],
        ] as const) {
          const owed = onchain.reduce((s, x) => s + x[key], 0n);
          const dust = held - owed;
          // Conservation: withdrawn + withdrawable + dust == deposited, with 0 <= dust <= holders.
          expect(book.withdrawnTotal + owed + dust, `${where}: ${key} conservation`).toBe(book.deposited);
          expect(dust >= 0n && dust <= BigInt(HOLDERS), `${where}: ${key} dust ${dust}`).toBe(true);
          if (dust > maxDust) maxDust = dust;
        }
      };

      for (let step = 0; step < ACTIONS; step++) {
        await act();
        await check(step);
      }
      // The runs must actually exercise the accounting, not just revert.
      expect(eth.deposits + tok.deposits, log.join('\n')).toBeGreaterThan(2);
      expect(eth.withdrawnTotal + tok.withdrawnTotal).toBeGreaterThan(0n);
      console.log(
        `seed ${run + 1}: ${eth.deposits} ETH + ${tok.deposits} token deposits, supply ${supply}, max dust ` +
          `${maxDust} wei`,
      );
    });
  }
});

async function readHolder(read: ChainClients['publicClient'], m: ModelAddresses, a: Address) {
  const [shares, eth, token] = await Promise.all([
    read.readContract({ address: m.token, abi: ShareTokenAbi, functionName: 'balanceOf', args: [a] }),
    read.readContract({ address: m.vault, abi: RevenueVaultAbi, functionName: 'withdrawableEth', args: [a] }),
    read.readContract({ address: m.vault, abi: RevenueVaultAbi, functionName: 'withdrawableToken', args: [a] }),
  ]);
  return { shares, eth, token };
}
