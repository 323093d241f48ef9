import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { expect, test, type Page } from '@playwright/test';
import { formatEther, formatUnits, getAddress, type Address } from 'viem';
import { CHROMIUM_ARGS } from '../../playwright.config.ts';
import { RevenueVaultAbi, TestTokenAbi } from '../../src/chain/artifacts.ts';
import { chainClients, claimShares, depositEth, depositToken, sendWrite } from '../../src/chain/client.ts';
import type { HolderFixture } from './holder-server.ts';
import {
  DESKTOP,
  PHONE,
  expectNoHorizontalOverflow,
  shoot,
  stopProcess as stop,
  storeTabKey,
  watchConsole,
} from './helpers.ts';

/**
 * The Holder page against a real stack (tests/browser/holder-server.ts: anvil + Tessera contracts + a
 * coordinator settling on them) with an injected EIP-1193 wallet that forwards to anvil, where the dev accounts
 * are unlocked: connect, switch chain, link the tab's peer, see the settled epoch wait out its challenge window,
 * claim exactly the ledger's shares, and withdraw exactly this wallet's part of the revenue.
 */

// This page needs no GPU: leave WebGPU off so the GPU page's self-test (started by main.tsx) ends at once.
test.use({
  launchOptions: {
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS.filter((a) => !/webgpu|swiftshader|Vulkan/i.test(a)),
  },
});

const NODE = 'node_modules/.bin/node';
// anvil dev accounts: 2 is the holder in the tab, 3 the other peer's wallet (holder-server), 4 pays revenue.
const HOLDER = getAddress('0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC');
const OTHER_KEY = '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6' as const;
const PAYER_KEY = '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a' as const;

function startServer(args: string[], logs: string[]): { child: ChildProcess; ready: Promise<HolderFixture> } {
  const child = spawn(NODE, ['--import', './scripts/register.ts', 'tests/browser/holder-server.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (d: Buffer) => logs.push(...String(d).split('\n').filter(Boolean));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const ready = new Promise<HolderFixture>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      const line = String(d)
        .split('\n')
        .find((l) => l.startsWith('READY '));
      if (line) resolve(JSON.parse(line.slice('READY '.length)) as HolderFixture);
    });
    child.once('exit', (code) => reject(new Error(`holder-server exited with ${code}:\n${logs.join('\n')}`)));
  });
  return { child, ready };
}

/**
 * A MetaMask-like window.ethereum: one account, starts on chain 1 (so the page must offer the switch), knows
 * only `chainId` besides; everything else goes to anvil, which signs and sends for its unlocked accounts.
 */
async function injectWallet(page: Page, o: { rpcUrl: string; chainId: number; account: Address }): Promise<void> {
  await page.addInitScript((o) => {
    let current = 1;
    let id = 0;
    const listeners = new Map<string, Set<(x: unknown) => void>>();
    const emit = (event: string, arg: unknown) => listeners.get(event)?.forEach((f) => f(arg));
    const hex = (n: number) => `0x${n.toString(16)}`;
    const fail = (code: number, message: string) => Object.assign(new Error(message), { code });
    const w = window as unknown as { __walletCalls: string[]; ethereum: unknown };
    w.__walletCalls = [];
    w.ethereum = {
      async request({ method, params }: { method: string; params?: unknown[] }) {
        w.__walletCalls.push(method);
        switch (method) {
          case 'eth_requestAccounts':
          case 'eth_accounts':
            return [o.account];
          case 'eth_chainId':
            return hex(current);
          case 'net_version':
            return String(current);
          case 'wallet_switchEthereumChain': {
            const want = Number.parseInt((params![0] as { chainId: string }).chainId, 16);
            if (want !== o.chainId && want !== 1) throw fail(4902, `Unrecognized chain ID ${want}`);
            current = want;
            setTimeout(() => emit('chainChanged', hex(current)), 0);
            return null;
          }
          case 'wallet_requestPermissions':
          case 'wallet_revokePermissions':
            return [];
        }
        if (current !== o.chainId && /^eth_(send|sign)/.test(method)) throw fail(4901, `wallet is on chain ${current}`);
        const res = await fetch(o.rpcUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params: params ?? [] }),
        });
        const j = (await res.json()) as { result?: unknown; error?: { code: number; message: string; data?: unknown } };
        if (j.error) throw Object.assign(fail(j.error.code, j.error.message), { data: j.error.data });
        return j.result;
      },
      on(event: string, f: (x: unknown) => void) {
        if (!listeners.has(event)) listeners.set(event, new Set());
        listeners.get(event)!.add(f);
      },
      removeListener(event: string, f: (x: unknown) => void) {
        listeners.get(event)?.delete(f);
      },
    };
  }, o);
}

async function rpc(url: string, method: string, params: unknown[] = []): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  return ((await res.json()) as { result: unknown }).result;
}

const json = async <T>(url: string, init?: RequestInit): Promise<T> => (await fetch(url, init)).json() as Promise<T>;

test('a holder connects, links the tab, claims exactly the settled shares and withdraws exactly its revenue', async ({
  page,
}, info) => {
  test.setTimeout(180_000);
  const dir = mkdtempSync(join(tmpdir(), 'tessera-holder-'));
  const logs: string[] = [];
  let server: ChildProcess | undefined;
  const requests: string[] = [];
  try {
    const tabKey = privateKeyToProtobuf(await generateKeyPair('Ed25519'));
    writeFileSync(join(dir, 'tab.key'), tabKey, { mode: 0o600 });
    const s = startServer(['--db', join(dir, 'coordinator.db'), '--tab-key', join(dir, 'tab.key')], logs);
    server = s.child;
    const fx = await s.ready;
    const { chain } = await json<{
      chain: {
        models: Record<string, { token: Address; vault: Address; distributor: Address }>;
        paymentToken: Address;
      };
    }>(`${fx.coordinator}/api/chain`);
    const addrs = chain.models[fx.modelId];

    await injectWallet(page, { rpcUrl: fx.rpcUrl, chainId: fx.chainId, account: HOLDER });
    page.on('request', (r) => requests.push(r.url()));
    await page.setViewportSize(DESKTOP);
    const errors = watchConsole(page);
    await page.goto(`${fx.app}/#/holder`);
    await storeTabKey(page, tabKey);
    await expect(page.getByRole('heading', { level: 1, name: 'Holder' })).toBeVisible();
    await expect(page.getByRole('link', { name: 'Holder' })).toHaveAttribute('aria-current', 'page');

    // Connect with the keyboard; the wallet is on the wrong chain, so the page offers the switch.
    const connect = page.getByRole('button', { name: 'Connect wallet' });
    await connect.focus();
    await page.keyboard.press('Enter');
    await expect(page.getByTestId('holder-wallet-state')).toHaveText('Wrong chain');
    await expect(page.getByTestId('holder-address')).toHaveText('0x3C44…93BC');
    await expect(page.getByTestId('holder-wallet-status')).toContainText('Your wallet is on Ethereum');
    await page.getByRole('button', { name: 'Switch to Local chain (anvil)' }).click();
    await expect(page.getByTestId('holder-wallet-state')).toHaveText('Connected');
    await expect(page.getByTestId('holder-chain')).toHaveText('Local chain (anvil) (id 31337)');

    // Link the tab's peer: the wallet signs EIP-712 (anvil answers eth_signTypedData_v4), the peer countersigns.
    const link = page.getByTestId('holder-link');
    await expect(link.getByTestId('holder-peer-id')).toHaveText(fx.tabPeerId);
    await expect(link.getByTestId('holder-link-state')).toHaveText('Not linked');
    await link.getByRole('button', { name: 'Link this tab’s peer' }).click();
    await expect(link.getByTestId('holder-link-status')).toHaveText(
      'Linked: this tab’s verified work is now credited to your wallet.',
    );
    await expect(link.getByTestId('holder-link-state')).toHaveText('Linked');
    expect(
      (await json<{ binding: { wallet: string } }>(`${fx.coordinator}/api/peers/${fx.tabPeerId}/binding`)).binding
        .wallet,
    ).toBe(HOLDER);
    expect(await page.evaluate(() => (window as unknown as { __walletCalls: string[] }).__walletCalls)).toContain(
      'eth_signTypedData_v4',
    );

    // Before settlement the tab's receipted work is pending: the ledger's figure, exactly.
    const card = page.getByTestId(`holder-model-${fx.modelId}`);
    const before = await json<{ models: Array<{ modelId: string; pendingFlops: number }> }>(
      `${fx.coordinator}/api/wallets/${HOLDER}`,
    );
    const pendingFlops = before.models.find((m) => m.modelId === fx.modelId)!.pendingFlops;
    expect(pendingFlops).toBeGreaterThan(0);
    await expect(card.getByTestId('h-pending').locator('.holder-amount')).toHaveText(
      formatUnits(BigInt(pendingFlops), 18),
      { timeout: 30_000 },
    );

    // Settle the epoch: root on chain, challenge window open, so the shares wait and Claim stays off.
    const closed = await json<{ epoch: number; status: string; leaves: Array<{ wallet: string; shares: string }> }>(
      `${fx.coordinator}/api/models/${fx.modelId}/epochs`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${fx.adminToken}` },
        body: '{}',
      },
    );
    expect(closed).toMatchObject({ epoch: 1, status: 'challenge' });
    const mine = BigInt(closed.leaves.find((l) => l.wallet === HOLDER)!.shares);
    const theirs = BigInt(closed.leaves.find((l) => l.wallet === fx.otherWallet)!.shares);
    expect(mine).toBe(BigInt(pendingFlops));
    await expect(card.getByTestId('h-waiting').locator('.holder-amount')).toHaveText(formatUnits(mine, 18), {
      timeout: 30_000,
    });
    await expect(card.getByTestId('h-waiting')).toContainText('Challenge window: claimable in 10 min');
    await expect(card.getByTestId('h-claimable').locator('.holder-amount')).toHaveText('0');
    await expect(card.getByRole('button', { name: /^Claim/ })).toBeDisabled();
    await expect(card.getByTestId('holder-epochs')).toContainText('Challenge window');
    await expect(card.getByTestId('holder-chart').locator('svg').first()).toBeVisible();

    // The window passes on chain; the page sees the epoch claimable (the chain decides, not the wall clock).
    await rpc(fx.rpcUrl, 'evm_increaseTime', [fx.challengeDelay + 1]);
    await rpc(fx.rpcUrl, 'evm_mine');
    await expect(card.getByTestId('h-claimable').locator('.holder-amount')).toHaveText(formatUnits(mine, 18), {
      timeout: 30_000,
    });
    await expect(card.getByTestId('h-waiting').locator('.holder-amount')).toHaveText('0');
    await expect(card.locator('[data-epoch="1"] td').last()).toHaveText('Claimable');
    await shoot(page, info, 'holder-claimable');

    // The other holder claims from Node, so the vault splits revenue between two holders.
    const other = chainClients(fx.rpcUrl, fx.chainId, OTHER_KEY);
    const theirView = await json<{
      models: Array<{ modelId: string; claim: { epoch: number; cumulative: string; proof: `0x${string}`[] } }>;
    }>(`${fx.coordinator}/api/wallets/${fx.otherWallet}`);
    const theirClaim = theirView.models.find((m) => m.modelId === fx.modelId)!.claim;
    await claimShares(other, addrs, {
      epoch: BigInt(theirClaim.epoch),
      account: fx.otherWallet as Address,
      cumulativeShares: BigInt(theirClaim.cumulative),
      proof: theirClaim.proof,
    });

    // Claim in the page: the balance rises by exactly the ledger's shares.
    const pub = other.publicClient;
    const balanceOf = (a: Address, token: Address) =>
      pub.readContract({ address: token, abi: TestTokenAbi, functionName: 'balanceOf', args: [a] });
    expect(await balanceOf(HOLDER, addrs.token)).toBe(0n);
    await card.getByRole('button', { name: `Claim ${formatUnits(mine, 18)} shares` }).click();
    await expect(card.getByTestId('holder-tx-status')).toHaveText(
      `Claimed ${formatUnits(mine, 18)} shares (epoch 1).`,
      { timeout: 30_000 },
    );
    expect(await balanceOf(HOLDER, addrs.token)).toBe(mine);
    await expect(card.getByTestId('h-balance').locator('.holder-amount')).toHaveText(formatUnits(mine, 18));
    await expect(card.getByTestId('h-claimed').locator('.holder-amount')).toHaveText(formatUnits(mine, 18));
    await expect(card.getByTestId('h-claimable').locator('.holder-amount')).toHaveText('0');
    await expect(card.getByRole('button', { name: /^Claim/ })).toBeDisabled();
    await expect(card.locator('[data-epoch="1"] td').last()).toHaveText('Claimed');

    // Revenue: whole multiples of the share supply, so each holder's part is exact (no rounding dust).
    const supply = mine + theirs;
    const payer = chainClients(fx.rpcUrl, fx.chainId, PAYER_KEY);
    const [ethPerShare, tokPerShare] = [1000n, 3n];
    await depositEth(payer, addrs, supply * ethPerShare);
    await sendWrite(payer, {
      address: chain.paymentToken,
      abi: TestTokenAbi,
      functionName: 'mint',
      args: [payer.account!.address, supply * tokPerShare],
    });
    await depositToken(payer, addrs, supply * tokPerShare);
    const [ethDue, tokDue] = [mine * ethPerShare, mine * tokPerShare];
    await expect(card.getByTestId('h-wd-eth').locator('.holder-amount')).toHaveText(formatEther(ethDue), {
      timeout: 30_000,
    });
    await expect(card.getByTestId('h-wd-token').locator('.holder-amount')).toHaveText(formatUnits(tokDue, 6));
    await expect(card.getByTestId('h-wd-token')).toContainText('TUSD');
    await expect(card.getByTestId('h-deposited')).toHaveText(
      `${formatEther(supply * ethPerShare)} ETH · ${formatUnits(supply * tokPerShare, 6)} TUSD`,
    );

    await page.setViewportSize(PHONE);
    // recharts redraws at the new width on its next ResizeObserver callback.
    await expect
      .poll(() => page.evaluate(() => document.querySelector('.recharts-surface')!.getBoundingClientRect().width))
      .toBeLessThan(PHONE.width);
    await expectNoHorizontalOverflow(page);
    await shoot(page, info, 'holder-revenue-phone');
    await page.setViewportSize(DESKTOP);
    await shoot(page, info, 'holder-revenue');

    const ethBefore = await pub.getBalance({ address: HOLDER });
    const tokBefore = await balanceOf(HOLDER, chain.paymentToken);
    await card.getByRole('button', { name: 'Withdraw ETH' }).click();
    await expect(card.getByTestId('holder-tx-status')).toHaveText(`Withdrew ${formatEther(ethDue)} ETH.`, {
      timeout: 30_000,
    });
    await card.getByRole('button', { name: 'Withdraw TUSD' }).click();
    await expect(card.getByTestId('holder-tx-status')).toHaveText(`Withdrew ${formatUnits(tokDue, 6)} TUSD.`, {
      timeout: 30_000,
    });
    // Exactly its part: the vault's events, the token balance, and the ETH balance net of the gas paid.
    const withdrawn = await pub.getContractEvents({
      address: addrs.vault,
      abi: RevenueVaultAbi,
      eventName: 'Withdrawn',
      args: { to: HOLDER },
      fromBlock: 0n,
    });
    expect(withdrawn.map((e) => e.args.amount)).toEqual([ethDue, tokDue]);
    const fees = await Promise.all(
      withdrawn.map(async (e) => {
        const r = await pub.getTransactionReceipt({ hash: e.transactionHash });
        return r.gasUsed * r.effectiveGasPrice;
      }),
    );
    expect(await pub.getBalance({ address: HOLDER })).toBe(ethBefore + ethDue - fees[0] - fees[1]);
    expect(await balanceOf(HOLDER, chain.paymentToken)).toBe(tokBefore + tokDue);
    await expect(card.getByTestId('h-wd-eth').locator('.holder-amount')).toHaveText('0');
    await expect(card.getByTestId('h-wd-token').locator('.holder-amount')).toHaveText('0');
    await expect(card.getByRole('button', { name: 'Withdraw ETH' })).toBeDisabled();

    // Disconnecting returns to the start; the page only ever talked to its own origin and the chain's RPC.
    await page.getByRole('button', { name: 'Disconnect' }).click();
    await expect(page.getByTestId('holder-wallet-state')).toHaveText('Not connected');
    const origins = new Set(requests.filter((u) => u.startsWith('http')).map((u) => new URL(u).origin));
    expect([...origins].sort()).toEqual([fx.app, fx.rpcUrl].sort());
    expect(errors, logs.join('\n')).toEqual([]);
  } finally {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('says plainly when the coordinator has no chain', async ({ page }) => {
  const errors = watchConsole(page);
  // The built app with /api/chain answered as a coordinator without a chain would.
  await page.route('**/api/chain', (r) => r.fulfill({ json: { chain: null } }));
  await page.goto('/#/holder');
  await expect(page.getByTestId('holder-no-chain')).toContainText('This coordinator is not connected to a blockchain');
  await expect(page.getByRole('button', { name: 'Connect wallet' })).toHaveCount(0);
  expect(errors).toEqual([]);
});
