import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { expect, test } from '@playwright/test';
import {
  DESKTOP,
  PHONE,
  REAL_HOST_CANDIDATES,
  expectNoHorizontalOverflow,
  json,
  shoot,
  startSwarmAndWorker,
  stopAll,
  storeTabKey,
  volunteerSteps,
  watchConsole,
} from './helpers.ts';

/**
 * The Volunteer page for real: a coordinator (relay + API, tests/browser/swarm-server.ts, which also serves the
 * built app with /api proxied to it) and one `npm run worker` process on Dawn; the tab joins with one click,
 * gets the other stage of a 2-stage model and trains it with the Node worker over direct WebRTC.
 */

test.use(REAL_HOST_CANDIDATES);

test('a tab joins the swarm with one click and trains a stage with a Node worker over WebRTC', async ({
  page,
}, info) => {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-volunteer-'));
  const logs: string[] = [];
  const children: ChildProcess[] = [];
  try {
    const { fx, keys } = await startSwarmAndWorker(dir, logs, children);

    await page.setViewportSize(DESKTOP);
    const errors = watchConsole(page);
    await page.goto(`${fx.app}/`);
    await storeTabKey(page, keys.tab);
    // Keyboard navigation from the GPU page to the Volunteer page.
    const link = page.getByRole('link', { name: 'Volunteer' });
    await link.focus();
    await page.keyboard.press('Enter');
    await expect(page.getByRole('heading', { level: 1, name: 'Volunteer' })).toBeVisible();
    await expect(page.getByRole('heading', { level: 1, name: 'Volunteer' })).toBeFocused();
    await expect(link).toHaveAttribute('aria-current', 'page');
    await expect(page.getByTestId('vol-status')).toHaveText('Not joined');

    await page.getByRole('button', { name: 'Join the swarm' }).click();
    await expect(page.getByTestId('vol-model')).toHaveText(fx.modelId, { timeout: 30_000 });
    await expect(page.getByTestId('vol-stage')).toHaveText(/^[12] of 2 · layer [12] of 2 · replica 1 of 1$/);
    await expect(page.getByTestId('vol-speed')).toContainText('fixed, modest estimate');

    // Two steps done by this tab (the first compiles the kernels on SwiftShader).
    await volunteerSteps(page, 2, 90_000);
    const hook = (await page.evaluate(() => window.__tesseraVolunteer))!;
    const tabLog = await page
      .getByTestId('vol-log')
      .innerText()
      .catch(() => '(no activity log)');
    expect(hook.error, `${JSON.stringify(hook)}\n[tab]\n${tabLog}\n${logs.join('\n')}`).toBeUndefined();
    expect(hook.status).toBe('training');
    expect(hook.peers).toBe(1);
    expect(hook.bytesSent).toBeGreaterThan(0);
    expect(hook.bytesReceived).toBeGreaterThan(0);
    await expect(page.getByTestId('vol-status')).toHaveText('Training');
    await expect(page.getByTestId('vol-steps')).toContainText(/^[2-9]|^\d{2}/);
    await expect(page.getByTestId('vol-peers')).toHaveText('1 over direct WebRTC');
    await expect(page.getByTestId('vol-log')).toContainText('connected to 1 peer(s) over WebRTC');
    await shoot(page, info, 'volunteer-training');
    await page.setViewportSize(PHONE);
    await expectNoHorizontalOverflow(page);
    await shoot(page, info, 'volunteer-training-phone');
    await page.setViewportSize(DESKTOP);

    // The coordinator saw the tab as a browser peer holding the stage, and recorded the steps it trained.
    const { peers } = await json<{
      peers: Array<{
        peerId: string;
        kind: string;
        status: string;
        assignments: Array<{ modelId: string; stage: number }>;
      }>;
    }>(`${fx.coordinator}/api/peers`);
    expect(hook.peerId).toBe(peerIdFromPrivateKey(privateKeyFromProtobuf(keys.tab)).toString());
    const tab = peers.find((p) => p.peerId === hook.peerId);
    expect(tab).toMatchObject({
      kind: 'browser',
      status: 'alive',
      assignments: [{ modelId: fx.modelId, stage: hook.assignment!.stage }],
    });
    expect(peers.filter((p) => p.kind === 'node' && p.status === 'alive')).toHaveLength(1);
    const trained = [hook.lastStep! - 1, hook.lastStep!];
    await expect
      .poll(
        async () => {
          const m = await json<{ metrics: Array<{ step: number; kind: string; value: number }> }>(
            `${fx.coordinator}/api/models/${fx.modelId}/metrics`,
          );
          return trained.every((step) =>
            m.metrics.some((x) => x.kind === 'train' && x.step === step && Number.isFinite(x.value) && x.value > 0),
          );
        },
        { timeout: 20_000, message: `train metrics for steps ${trained.join(', ')}` },
      )
      .toBe(true);

    // Pausing holds the tab between steps when its worker can; otherwise the page says why it cannot.
    const pause = page.getByRole('button', { name: 'Pause' });
    const canPause = await page.evaluate(() => document.querySelector('#pause-note') === null);
    info.annotations.push({
      type: 'pause',
      description: canPause ? 'paused and resumed' : 'not available in this build (Pause disabled)',
    });
    if (canPause) {
      await pause.click();
      await expect(page.getByTestId('vol-status')).toHaveText('Paused', { timeout: 30_000 });
      const held = await page.evaluate(() => window.__tesseraVolunteer!.stepsDone);
      await page.waitForTimeout(3000);
      expect(await page.evaluate(() => window.__tesseraVolunteer!.stepsDone)).toBe(held);
      await page.getByRole('button', { name: 'Resume' }).click();
      await page.waitForFunction((n) => window.__tesseraVolunteer!.stepsDone > n, held, { timeout: 30_000 });
    } else {
      await expect(pause).toBeDisabled();
    }

    // Leaving frees the stage at once.
    await page.getByRole('button', { name: 'Leave' }).click();
    await expect(page.getByTestId('vol-status')).toHaveText('Stopped', { timeout: 20_000 });
    await expect(page.getByTestId('vol-detail')).toHaveText('You left the swarm.');
    const after = await json<{ peers: Array<{ peerId: string; status: string }> }>(`${fx.coordinator}/api/peers`);
    expect(after.peers.find((p) => p.peerId === hook.peerId)?.status).toBe('gone');
    await expect(page.getByRole('button', { name: 'Join again' })).toBeEnabled();
    expect(errors, logs.join('\n')).toEqual([]);
  } finally {
    await stopAll(children);
    rmSync(dir, { recursive: true, force: true });
  }
});
