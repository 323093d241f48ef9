import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, expect, test, type Page, type TestInfo } from '@playwright/test';
import { CHROMIUM_ARGS } from '../../playwright.config.ts';
import {
  DESKTOP,
  PHONE,
  expectNoHorizontalOverflow,
  injectAnvilWallet,
  json,
  jsonLine,
  scanAxe,
  shoot,
  spawnLogged,
  startSwarmAndWorker,
  stopAll,
  stopProcess,
  storeTabKey,
  volunteerSteps,
  watchConsole,
  watchRefusals,
} from './helpers.ts';
import { STAND_IN_TOKENS, STEPS, TEAM_NAME, type ResearchFixture } from './researcher-fixture.ts';

/**
 * The Researcher, Leaderboards and Volunteer views against a real coordinator (tests/browser/researcher-server.ts:
 * a 2-stage model held by three peers, 20 steps, measured links, receipts, a team): the loss curve and its live
 * updates over SSE, the topology diagram with every peer and labelled links, the codec table, a model proposed
 * through the form (a refusal shown at its field first), the leaderboards, teams and settings from the tab; every
 * view scanned by axe at phone and desktop widths (no serious or critical violations), without horizontal
 * overflow or console errors, and screenshotted. Then the prompt box on anvil (deposit, signed streaming prompt,
 * exact metering), and a training tab (swarm-server + a Node worker) pausing itself while hidden.
 */

// These pages need no GPU: leave WebGPU off so the GPU page's self-test (started by main.tsx) ends at once.
// (The last test, where a tab trains, launches its own browser with SwiftShader WebGPU.)
const NO_GPU = {
  launchOptions: {
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS.filter((a) => !/webgpu|swiftshader|Vulkan/i.test(a)),
  },
};
test.use(NO_GPU);

function startServer(args: string[], logs: string[]): { child: ChildProcess; ready: Promise<ResearchFixture> } {
  const child = spawnLogged(['tests/browser/researcher-server.ts', ...args], logs, 'server');
  return { child, ready: jsonLine<ResearchFixture>(child, 'READY ', logs) };
}

/** Every width: no overflow, the scan, a screenshot. */
async function checkViews(page: Page, info: TestInfo, name: string, ready: () => Promise<void>): Promise<void> {
  for (const [label, size] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    await page.setViewportSize(size);
    await ready();
    await expectNoHorizontalOverflow(page);
    await scanAxe(page, info, `${name}-${label}`);
    await shoot(page, info, `${name}-${label}`);
  }
}

test(
  'the Researcher page shows live training, the topology and proposes a model; Leaderboards and Volunteer ' +
    'views pass axe at both widths',
  async ({ page }, info) => {
    test.setTimeout(180_000);
    const dir = mkdtempSync(join(tmpdir(), 'tessera-research-'));
    const logs: string[] = [];
    let server: ChildProcess | undefined;
    try {
      const s = startServer(['--db', join(dir, 'coordinator.db')], logs);
      server = s.child;
      const fx = await s.ready;
      await page.setViewportSize(DESKTOP);
      const errors = watchConsole(page);
      // HTTP refusals the browser logs as "Failed to load resource": only the one this test provokes on purpose
      // (a taken model id) is allowed.
      const refusals = watchRefusals(page);

      // ---- Researcher: history from the database, then live over SSE ----
      await page.goto(`${fx.app}/#/researcher`);
      await expect(page.getByRole('heading', { level: 1, name: 'Researcher' })).toBeVisible();
      await expect(page.getByRole('link', { name: 'Researcher' })).toHaveAttribute('aria-current', 'page');
      await expect(page.getByTestId('research-stream')).toHaveAttribute('data-stream', 'live');
      await expect(page).toHaveURL(new RegExp(`#/researcher\\?model=${fx.modelId}$`));
      const last = STEPS - 1;
      await expect(page.getByTestId('research-loss-caption')).toContainText(
        `training ${(6.9 - last * 0.12).toFixed(4)} at step ${last}, validation ${(7 - last * 0.1).toFixed(4)} ` +
          `at step ${last}`,
      );
      await expect(page.getByTestId('research-loss').locator('.recharts-line')).toHaveCount(2);
      await expect(page.getByTestId('research-throughput-caption')).toContainText('tok/s over the last 10 steps');

      // A step reported now arrives without a reload (the SSE stream), as does its tokens/s point.
      await json(`${fx.coordinator}/api/models/${fx.modelId}/metrics`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ step: STEPS, loss: 1.2345, tokens: 32 }),
      });
      await expect(page.getByTestId('research-loss-caption')).toContainText(`training 1.2345 at step ${STEPS}`);

      // Topology: a column per stage, every peer a node, links labelled with bandwidth and RTT.
      const diagram = page.getByTestId('topo-diagram');
      await expect(diagram.locator('.react-flow__node-stage')).toHaveCount(2);
      await expect(diagram.locator('.react-flow__node-peer')).toHaveCount(fx.peers.length);
      for (const p of fx.peers)
        await expect(diagram.locator(`.react-flow__node[data-id="${p.id}"]`)).toContainText(`replica ${p.replica + 1}`);
      await expect(diagram.locator('.react-flow__edge')).toHaveCount(3); // stage 1 → two replicas, and their sync link
      await expect(diagram.locator('.react-flow__edge-text').first()).toHaveText(/kB\/s · 10 ms$/);
      await expect(page.getByTestId('topo-peers').locator('tbody tr')).toHaveCount(fx.peers.length);
      await expect(page.getByTestId('topo-peers')).toContainText(TEAM_NAME);
      await expect(page.getByTestId('topo-codec').locator('tbody tr')).toHaveCount(1);
      await expect(page.getByTestId('topo-codec')).toContainText('Stage 1 → 2');
      // The open epoch, judged as settlement would: the 8 receipted units (stage 1's two replicas split the
      // micro-batches).
      const epochRow = page.getByTestId('research-verification-table').locator('tbody tr');
      await expect(epochRow).toHaveCount(1);
      await expect(epochRow.locator('th')).toHaveText('1 (open)');
      await expect(epochRow.locator('td').first()).toHaveText('8');
      await expect(page.getByTestId('prompt-no-chain')).toBeVisible();

      // At each width the diagram refits: every node inside the diagram's box.
      await checkViews(page, info, 'researcher', async () => {
        await expect(diagram.locator('.react-flow__node-peer').first()).toBeVisible();
        await expect
          .poll(() =>
            diagram.evaluate((box) => {
              const b = box.getBoundingClientRect();
              return [...box.querySelectorAll('.react-flow__node')].filter((n) => {
                const r = n.getBoundingClientRect();
                return r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1;
              }).length;
            }),
          )
          .toBe(0);
      });
      await page.setViewportSize(DESKTOP);

      // ---- Propose a model: the form starts from the software preset and shows what it trains; bad fields are
      // refused at their fields with the validator's words, a taken id comes back from the coordinator ----
      const form = page.getByTestId('research-propose');
      await expect(form.getByTestId('propose-tokens')).toContainText('1,024 tokens per step');
      await expect(form.getByTestId('propose-stages').locator('tbody tr')).toHaveCount(4);
      await form.getByLabel('Name', { exact: true }).fill('Proposed in the browser');
      await form.getByLabel('Id (optional)').fill(fx.modelId);
      await form.getByLabel('Layers per stage').fill('2, 1');
      await form.getByLabel('Peak learning rate').fill('-1');
      await form.getByRole('button', { name: 'Propose model' }).click();
      await expect(form.getByTestId('propose-error-layout')).toHaveText(
        'stage layout [2,1] does not split 4 layers into 2 stages',
      );
      await expect(form.getByTestId('propose-error-lr')).toHaveText(
        'optim.lr must be a finite number in [0, 10], got -1',
      );
      await expect(form.getByLabel('Layers per stage')).toBeFocused();
      await form.getByLabel('Layers per stage').fill('2, 2');
      await form.getByLabel('Peak learning rate').fill('0.002');
      await form.getByLabel('Steps', { exact: true }).fill('300');
      await form.getByLabel('Sequences per micro-batch').fill('2');
      // The derived values follow the form: 2 stages, 4 micro-batches × 2 sequences × 64 tokens per step.
      await expect(form.getByTestId('propose-tokens')).toContainText('512 tokens per step');
      await expect(form.getByTestId('propose-stages').locator('tbody tr')).toHaveCount(2);
      // The subspace dimension is asked for subspace codecs only (empty: a quarter of the width).
      const codec = form.getByLabel('Boundary codec');
      await codec.selectOption('subspace');
      await expect(form.getByLabel('Subspace dimension (k)')).toHaveAttribute('placeholder', '16');
      await codec.selectOption('int8');
      await expect(form.getByLabel('Subspace dimension (k)')).toHaveCount(0);
      await form.getByRole('button', { name: 'Propose model' }).click();
      await expect(form.getByTestId('propose-error-id')).toContainText(fx.modelId);
      await form.getByLabel('Id (optional)').fill('browser-proposed');
      await form.getByLabel('Layers per stage').press('Enter');
      await expect(form.getByTestId('propose-status')).toContainText(
        'Registered Proposed in the browser as browser-proposed',
      );
      const registered = await json<{
        model: { layout: number[]; codec: string; config: { layers: number }; spec: unknown };
      }>(`${fx.coordinator}/api/models/browser-proposed`);
      expect(registered.model).toMatchObject({ layout: [2, 2], codec: 'int8', config: { layers: 4 } });
      expect(registered.model.spec).toMatchObject({
        layout: [2, 2],
        codec: { name: 'int8', tail: 0 },
        batch: 2,
        optim: { lr: 0.002, warmup: 20, steps: 300 },
      });
      // The page follows the new model: picker, URL and an empty chart waiting for its first step.
      await expect(page.getByTestId('model-picker')).toHaveValue('browser-proposed');
      await expect(page).toHaveURL(/#\/researcher\?model=browser-proposed$/);
      await expect(page.getByTestId('research-loss-caption')).toContainText(
        'No loss reported for browser-proposed yet',
      );
      await shoot(page, info, 'researcher-proposed-desktop');

      // ---- Leaderboards ----
      await page.goto(`${fx.app}/#/leaderboards?model=${fx.modelId}`);
      await expect(page.getByRole('heading', { level: 1, name: 'Leaderboards' })).toBeVisible();
      const volunteers = page.getByTestId('board-volunteer-table');
      await expect(volunteers.locator('tbody tr')).toHaveCount(fx.peers.length);
      await expect(volunteers).toContainText(TEAM_NAME);
      await expect(volunteers.locator('tbody tr').first().locator('td').nth(2)).toHaveText(/FLOP$/);
      await expect(page.getByTestId('board-team-table')).toContainText(TEAM_NAME);
      await checkViews(page, info, 'leaderboards', async () => {
        await expect(volunteers).toBeVisible();
      });

      // ---- Volunteer (not joined): settings, teams, what a peer sees ----
      await page.setViewportSize(DESKTOP);
      await page.goto(`${fx.app}/#/volunteer`);
      await expect(page.getByRole('heading', { level: 1, name: 'Volunteer' })).toBeVisible();
      await expect(page.getByTestId('vol-prefer').locator('option')).toHaveCount(3); // where most needed + 2 models
      await expect(page.getByTestId('vol-teams-table')).toContainText(TEAM_NAME);
      await expect(page.getByTestId('vol-visibility')).toContainText('never sees other stages’ weights');
      await checkViews(page, info, 'volunteer', async () => {
        await expect(page.getByTestId('vol-teams-table')).toBeVisible();
      });
      await page.setViewportSize(DESKTOP);

      // Teams from the tab: create one (signed by the tab's peer key), then move to another.
      const teams = page.getByTestId('vol-teams');
      await teams.getByLabel('New team').fill('Tab team');
      await teams.getByLabel('New team').press('Enter');
      await expect(teams.getByTestId('vol-team-status')).toHaveText('Created Tab team and joined it.');
      await expect(teams.getByTestId('vol-team')).toHaveText('This tab is in Tab team.');
      await teams.getByRole('button', { name: `Join ${TEAM_NAME}` }).click();
      await expect(teams.getByTestId('vol-team')).toHaveText(`This tab is in ${TEAM_NAME}.`);
      const members = Object.fromEntries(
        (await json<{ teams: Array<{ name: string; members: number }> }>(`${fx.coordinator}/api/teams`)).teams.map(
          (t) => [t.name, t.members],
        ),
      );
      expect(members).toEqual({ [TEAM_NAME]: 2, 'Tab team': 0 });

      // Settings are keyboard-operable and survive a reload (localStorage).
      const duty = page.getByTestId('vol-duty');
      await duty.focus();
      for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowLeft');
      await expect(page.getByText('GPU use: at most 50% of the time')).toBeVisible();
      await page.getByTestId('vol-pause-hidden').press('Space');
      await page.getByTestId('vol-prefer').selectOption('browser-proposed');
      await page.reload();
      await expect(page.getByTestId('vol-duty')).toHaveValue('50');
      await expect(page.getByTestId('vol-pause-hidden')).not.toBeChecked();
      await expect(page.getByTestId('vol-prefer')).toHaveValue('browser-proposed');

      // The GPU page (no WebGPU in this browser): its notice passes the same scan.
      await page.goto(`${fx.app}/#/`);
      await expect(page.getByRole('heading', { level: 1, name: 'Your GPU' })).toBeVisible();
      await checkViews(page, info, 'gpu', async () => {
        await expect(page.locator('main[data-phase]')).not.toHaveAttribute('data-phase', /^(idle|detecting)$/);
      });

      expect(refusals).toEqual(['409 POST /api/models']);
      expect(errors).toEqual([
        'console.error: Failed to load resource: the server responded with a status of 409 (Conflict)',
      ]);
    } finally {
      await stopProcess(server);
      rmSync(dir, { recursive: true, force: true });
      if (test.info().status !== test.info().expectedStatus) console.log(logs.slice(-40).join('\n'));
    }
  },
);

test(
  'the prompt box: a 402 before any deposit, a deposit from the wallet, then a signed prompt streams token ' +
    'by token and is metered exactly',
  async ({ page }, info) => {
    test.setTimeout(180_000);
    const dir = mkdtempSync(join(tmpdir(), 'tessera-prompt-'));
    const logs: string[] = [];
    let server: ChildProcess | undefined;
    // anvil dev account 5: pays for prompts.
    const PAYER = '0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc';
    try {
      const s = startServer(['--db', join(dir, 'coordinator.db'), '--chain'], logs);
      server = s.child;
      const fx = await s.ready;
      await injectAnvilWallet(page, { rpcUrl: fx.rpcUrl!, chainId: fx.chainId!, account: PAYER });
      await page.setViewportSize(DESKTOP);
      const errors = watchConsole(page);
      const refusals = watchRefusals(page);
      await page.goto(`${fx.app}/#/researcher`);
      const card = page.getByTestId('research-prompt');
      await card.getByRole('button', { name: 'Connect wallet' }).click();
      await expect(card.getByTestId('prompt-available')).toHaveText('0 ETH');

      // Nothing deposited: the coordinator answers 402 before running anything, and the page says so.
      const form = card.locator('form.prompt-form');
      await form.getByLabel('Prompt', { exact: true }).fill('The jury said');
      await form.getByLabel('Max tokens').fill('8');
      await form.getByRole('button', { name: 'Send' }).click();
      await expect(card.getByTestId('prompt-error')).toContainText('Your balance does not cover this request');
      await expect(card.getByTestId('prompt-output')).toHaveText('');

      // Deposit through the wallet (a real transaction on anvil); the balance follows.
      await card.getByLabel('Amount (ETH)').fill('0.01');
      await card.getByRole('button', { name: 'Deposit' }).click();
      await expect(card.getByTestId('prompt-deposit-status')).toHaveText(
        'Deposited 0.01 ETH into the inference escrow.',
        { timeout: 30_000 },
      );
      await expect(card.getByTestId('prompt-available')).toHaveText('0.01 ETH');

      // Record every change of the output, to see it grow token by token rather than arrive at once.
      await card.getByTestId('prompt-output').evaluate((el) => {
        const seen: string[] = [];
        (window as unknown as { __outputs: string[] }).__outputs = seen;
        new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, {
          childList: true,
          subtree: true,
          characterData: true,
        });
      });
      await form.getByRole('button', { name: 'Send' }).click();
      await expect(card.getByTestId('prompt-status')).toContainText('Done · ', { timeout: 30_000 });
      await expect(card.getByTestId('prompt-error')).toHaveCount(0);
      const status = (await card.getByTestId('prompt-status').textContent())!;
      const [, promptTokens, generated] = /Done · (\d+) prompt \+ (\d+) generated tokens/.exec(status)!;
      expect(Number(generated)).toBe(8);
      const outputs = await page.evaluate(() => (window as unknown as { __outputs: string[] }).__outputs);
      const growth = [...new Set(outputs.map((o) => o.length))];
      expect(growth.length, `output lengths seen: ${growth.join(', ')}`).toBeGreaterThanOrEqual(4);
      const final = (await card.getByTestId('prompt-output').textContent())!;
      expect(final.startsWith('The jury said')).toBe(true);
      expect(final.length).toBeGreaterThan('The jury said'.length);
      expect(STAND_IN_TOKENS.length).toBeGreaterThanOrEqual(8);
      // The wallet signed the request (personal_sign), and the request was metered exactly: tokens × price.
      expect(await page.evaluate(() => (window as unknown as { __walletCalls: string[] }).__walletCalls)).toContain(
        'personal_sign',
      );
      const payer = await json<{ uncharged: string }>(`${fx.coordinator}/api/payers/${PAYER}`);
      const weiPerToken = 2n * 10n ** 11n; // 0.0002 ETH per 1,000 tokens
      expect(BigInt(payer.uncharged)).toBe(BigInt(Number(promptTokens) + 8) * weiPerToken);
      await expect(card.getByTestId('prompt-uncharged')).toHaveText(`${Number(payer.uncharged) / 1e18} ETH`, {
        timeout: 20_000,
      });
      await checkViews(page, info, 'researcher-prompt', async () => {
        await expect(card.getByTestId('prompt-output')).toBeVisible();
      });

      expect(refusals).toEqual(['402 POST /v1/completions']);
      expect(
        errors.filter((e) => !/Failed to load resource: the server responded with a status of 402/.test(e)),
      ).toEqual([]);
    } finally {
      await stopProcess(server);
      rmSync(dir, { recursive: true, force: true });
      if (test.info().status !== test.info().expectedStatus) console.log(logs.slice(-40).join('\n'));
    }
  },
);

test(
  'a volunteer tab asks for its chosen model, pauses itself while hidden and resumes when shown; the ' +
    'Researcher page shows it in the topology',
  async ({}, info) => {
    test.setTimeout(240_000);
    // This one trains: its own browser, with WebGPU on SwiftShader as playwright.config.ts sets it up.
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true });
    const page = await browser.newPage();
    const dir = mkdtempSync(join(tmpdir(), 'tessera-research-vol-'));
    const logs: string[] = [];
    const children: ChildProcess[] = [];
    try {
      const { fx, keys } = await startSwarmAndWorker(dir, logs, children);

      await page.setViewportSize(DESKTOP);
      const errors = watchConsole(page);
      const refusals = watchRefusals(page);
      await page.goto(`${fx.app}/#/volunteer`);
      await storeTabKey(page, keys.tab);
      await page.getByTestId('vol-prefer').selectOption(fx.modelId);
      await page.getByTestId('vol-duty').fill('70');
      await page.getByRole('button', { name: 'Join the swarm' }).click();
      await volunteerSteps(page, 1, 120_000);
      const hook = (await page.evaluate(() => window.__tesseraVolunteer))!;
      expect(hook.error, logs.slice(-30).join('\n')).toBeUndefined();
      // This build's worker takes the GPU-use cap (the page says so when one cannot).
      await expect(page.getByText('GPU use: at most 70% of the time')).toBeVisible();
      await expect(page.getByText('cannot cap its GPU use yet')).toHaveCount(0);
      // The join asked for the chosen model.
      const { peers } = await json<{ peers: Array<{ peerId: string; preferModel: string | null }> }>(
        `${fx.coordinator}/api/peers`,
      );
      expect(peers.find((p) => p.peerId === hook.peerId)?.preferModel).toBe(fx.modelId);

      // Hidden (the browser's visibilitychange): the tab finishes its step and holds; shown again, it trains on.
      const setVisibility = (state: 'hidden' | 'visible') =>
        page.evaluate((state) => {
          Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
          document.dispatchEvent(new Event('visibilitychange'));
        }, state);
      // ("Paused" once the step in flight lands; a step aborted by a re-layout never lands, so "Pausing" may stay.)
      await setVisibility('hidden');
      await expect(page.getByTestId('vol-status')).toHaveText(/^Paus(ing|ed)$/);
      await expect(page.getByTestId('vol-detail')).toContainText('this tab is hidden');
      // Wait for the step in flight to land (then the page says Paused); if none lands within a minute, none will.
      await page
        .waitForFunction(() => window.__tesseraVolunteer!.status === 'paused', null, { timeout: 60_000 })
        .catch(() => {});
      const held = await page.evaluate(() => window.__tesseraVolunteer!.stepsDone);
      await page.waitForTimeout(5000);
      expect(await page.evaluate(() => window.__tesseraVolunteer!.stepsDone), 'steps while hidden').toBe(held);
      await setVisibility('visible');
      await expect(page.getByTestId('vol-status')).toHaveText('Training');
      await page.waitForFunction((n) => window.__tesseraVolunteer!.stepsDone > n, held, { timeout: 60_000 });

      // The Researcher page, while the session goes on: this tab is a browser node of the diagram, the loss is live.
      await page.getByRole('link', { name: 'Researcher' }).click();
      await expect(page.getByTestId('research-stream')).toHaveAttribute('data-stream', 'live');
      const node = page.getByTestId('topo-diagram').locator(`.react-flow__node[data-id="${hook.peerId}"]`);
      await expect(node).toContainText('Browser');
      await expect(page.getByTestId('research-loss-caption')).toContainText(/training \d+\.\d{4} at step \d+/, {
        timeout: 60_000,
      });
      await shoot(page, info, 'researcher-live-swarm');
      await page.getByRole('link', { name: 'Volunteer' }).click();
      await page.getByRole('button', { name: 'Leave' }).click();
      await expect(page.getByTestId('vol-status')).toHaveText('Stopped', { timeout: 30_000 });
      // A tab whose main thread compiles SwiftShader kernels for seconds can miss heartbeats on this shared machine:
      // the coordinator declares it gone, its next heartbeat gets 409 and the worker joins again, as designed.
      const unexpected = refusals.filter((r) => r !== '409 POST /api/peers/heartbeat');
      expect(unexpected).toEqual([]);
      expect(
        errors.filter((e) => !/status of 409 \(Conflict\)/.test(e)),
        `refused requests: ${refusals.join(', ')}`,
      ).toEqual([]);
    } catch (e) {
      const tabLog = await page
        .getByTestId('vol-log')
        .innerText()
        .catch(() => '(no activity log)');
      console.log(`[tab]\n${tabLog}\n${logs.slice(-80).join('\n')}`);
      throw e;
    } finally {
      await browser.close();
      await stopAll(children);
      rmSync(dir, { recursive: true, force: true });
      if (test.info().status !== test.info().expectedStatus) console.log(logs.slice(-60).join('\n'));
    }
  },
);
