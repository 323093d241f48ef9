import { expect, test } from '@playwright/test';
import { describe as describeComparison } from '../../src/ops/compare.ts';
import {
  DESKTOP,
  PHONE,
  expectNoHorizontalOverflow,
  installGpuGate,
  registeredOpsInSource,
  releaseGpuReads,
  selfTestHook,
  shoot,
  watchConsole,
} from './helpers.ts';

/**
 * The "Your GPU" page in headless Chromium on SwiftShader: adapter and limits, the kernel self-test on
 * real WebGPU, and what a person sees without WebGPU or after losing the device. Screenshots of every
 * state at desktop and phone width go to test-results/screenshots/.
 */

test('shows the SwiftShader adapter and its limits, and every kernel check passes, without console errors', async ({
  page,
}, info) => {
  await page.setViewportSize(DESKTOP);
  const errors = watchConsole(page);
  await page.goto('/');

  await expect(page.getByRole('heading', { level: 1, name: 'Your GPU' })).toBeVisible();
  // COOP/COEP from vite.config.ts: onnxruntime-web's threaded wasm needs an isolated page.
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
  await expect(page.getByTestId('adapter-kind')).toHaveText(/software/i);
  await expect(page.getByTestId('adapter-label')).toContainText(/swiftshader/i);
  // The limits shown are the adapter's own (Chromium 156's SwiftShader reports 32 KiB workgroup memory and
  // 10 storage buffers; WebGPU guarantees at least 16 KiB and 8).
  const actual = await page.evaluate(async () => {
    const a = await navigator.gpu.requestAdapter();
    return { storage: a!.limits.maxComputeWorkgroupStorageSize, buffers: a!.limits.maxStorageBuffersPerShaderStage };
  });
  expect(actual.storage).toBeGreaterThanOrEqual(16384);
  expect(actual.buffers).toBeGreaterThanOrEqual(8);
  const storage = page.locator('[data-limit="maxComputeWorkgroupStorageSize"]');
  await expect(storage).toContainText(String(actual.storage));
  await expect(storage).toContainText(`${actual.storage / 1024} KiB`);
  await expect(page.locator('[data-limit="maxStorageBuffersPerShaderStage"] dd')).toHaveText(String(actual.buffers));
  await expect(page.getByTestId('features')).toContainText('timestamp-query');

  await page.waitForFunction(
    () => window.__tesseraSelfTest?.status === 'done' || window.__tesseraSelfTest?.status === 'aborted',
    null,
    {
      timeout: 100_000,
    },
  );
  const hook = await selfTestHook(page);
  expect(hook.status).toBe('done');
  expect(hook.adapter?.isSoftware).toBe(true);
  expect(hook.adapter?.runtime).toBe('browser');
  expect(hook.adapter?.limits.maxComputeWorkgroupStorageSize).toBe(actual.storage);

  // Every op registered in the source ran in this build and compared at least one output.
  const ops = registeredOpsInSource();
  expect(ops.length).toBeGreaterThan(0);
  expect(hook.ops, 'the build is stale: rebuild with `npm run test:browser`').toEqual(ops);
  const failures: string[] = [];
  for (const op of ops) {
    const report = hook.reports.find((r) => r.op === op);
    if (!report) failures.push(`${op}: no report`);
    else if (report.error) failures.push(`${op}: threw ${report.error}`);
    else if (report.results.length === 0) failures.push(`${op}: compared nothing`);
    else for (const c of report.results) if (!c.pass) failures.push(`${op}: ${describeComparison(c)}`);
  }
  const summary = hook.reports.map((r) => `${r.op} ${Math.round(r.ms)} ms (${r.results.length} checks)`).join(', ');
  console.log(
    `self-test on ${hook.adapter?.description || hook.adapter?.architecture}: ${summary}; total ` +
      `${Math.round(hook.ms)} ms`,
  );
  expect(failures, `kernel checks failed in Chromium:\n${failures.join('\n')}`).toEqual([]);
  expect(hook.passed).toBe(true);

  // The UI agrees with the structured results.
  await expect(page.getByTestId('verdict')).toContainText('correctly');
  await expect(page.locator('tbody.op[data-state="pass"]')).toHaveCount(ops.length);
  await expect(page.getByRole('button', { name: 'Run again' })).toBeEnabled();

  // Each op folds to one row; opening it (keyboard works: it is a button) lists its checks.
  const first = hook.reports[0];
  const toggle = page.locator(`tbody.op[data-op="${first.op}"] .op-toggle`);
  await expect(toggle).toHaveAttribute('aria-expanded', 'false');
  await toggle.focus();
  await page.keyboard.press('Enter');
  await expect(toggle).toHaveAttribute('aria-expanded', 'true');
  await expect(page.locator(`tbody.op[data-op="${first.op}"] tr[data-case]`)).toHaveCount(first.results.length);

  await shoot(page, info, 'selftest-done-desktop');
  await page.setViewportSize(PHONE);
  await expectNoHorizontalOverflow(page);
  await shoot(page, info, 'selftest-done-phone');

  expect(errors, errors.join('\n')).toEqual([]);
});

test(
  'while the self-test runs it shows progress; a lost device is explained and Reconnect (by keyboard) ' + 'recovers',
  async ({ page }, info) => {
    await installGpuGate(page);
    await page.setViewportSize(DESKTOP);
    const errors = watchConsole(page);
    await page.goto('/');

    const selftest = page.getByTestId('selftest');
    await expect(selftest).toHaveAttribute('data-status', 'running');
    await expect(page.getByTestId('selftest-progress')).toBeVisible();
    await expect(page.getByRole('button', { name: /run again|run self-test/i })).toBeDisabled();
    await shoot(page, info, 'selftest-running-desktop');
    await page.setViewportSize(PHONE);
    await expectNoHorizontalOverflow(page);
    await shoot(page, info, 'selftest-running-phone');

    // The device goes away mid-run (driver reset, GPU reclaimed): the page says so and offers a reconnect.
    await page.evaluate(() => (window as unknown as { __devices: GPUDevice[] }).__devices.forEach((d) => d.destroy()));
    await releaseGpuReads(page);
    const problem = page.getByTestId('problem');
    await expect(problem).toHaveAttribute('data-kind', 'device-lost');
    await expect(problem).toContainText('connection to your GPU was lost');
    await expect(problem).toContainText('Reconnect GPU');
    await expect(selftest).toHaveAttribute('data-status', 'aborted');
    await expect(selftest).toContainText('interrupted');
    // Ops cut short by the loss are marked interrupted, not blamed as failing kernels.
    await expect(page.locator('tbody.op[data-state="fail"]')).toHaveCount(0);
    await expect(page.locator('tbody.op[data-state="interrupted"]').first()).toBeVisible();
    await expectNoHorizontalOverflow(page);
    await shoot(page, info, 'device-lost-phone');
    await page.setViewportSize(DESKTOP);
    await shoot(page, info, 'device-lost-desktop');

    // Keyboard only: the reconnect button is the first thing Tab reaches.
    await page.keyboard.press('Tab');
    const reconnect = page.getByRole('button', { name: 'Reconnect GPU' });
    await expect(reconnect).toBeFocused();
    await page.keyboard.press('Enter');
    await expect(problem).toHaveCount(0);
    await expect(page.getByTestId('adapter-kind')).toHaveText(/software/i);
    await expect(selftest).toHaveAttribute('data-status', /running|done/);

    expect(errors, errors.join('\n')).toEqual([]);
  },
);

test('without WebGPU the page says which browser and flag to use, and does not crash', async ({ page }, info) => {
  await page.addInitScript(() => {
    delete (Navigator.prototype as { gpu?: unknown }).gpu;
  });
  const errors = watchConsole(page);
  for (const [name, size] of [
    ['desktop', DESKTOP],
    ['phone', PHONE],
  ] as const) {
    await page.setViewportSize(size);
    await page.goto('/');
    const problem = page.getByTestId('problem');
    await expect(problem).toHaveAttribute('data-kind', 'unavailable');
    await expect(problem.getByRole('heading', { level: 2 })).toHaveText('WebGPU is not available here');
    const advice = page.getByTestId('advice');
    await expect(advice).toContainText('Chrome or Edge 113+');
    await expect(advice).toContainText('chrome://flags/#enable-unsafe-webgpu');
    await expect(page.getByTestId('adapter')).toHaveCount(0);
    await expect(page.getByRole('button', { name: 'Check again' })).toBeEnabled();
    await expectNoHorizontalOverflow(page);
    await shoot(page, info, `no-webgpu-${name}`);
  }
  // "Check again" re-runs detection and lands in the same clear state.
  await page.getByRole('button', { name: 'Check again' }).click();
  await expect(page.getByTestId('problem')).toHaveAttribute('data-kind', 'unavailable');
  expect(errors, errors.join('\n')).toEqual([]);
});

test('WebGPU without an adapter (blocklisted GPU) is explained too', async ({ page }, info) => {
  await page.addInitScript(() => {
    GPU.prototype.requestAdapter = async () => null;
  });
  const errors = watchConsole(page);
  await page.setViewportSize(PHONE);
  await page.goto('/');
  const problem = page.getByTestId('problem');
  await expect(problem).toHaveAttribute('data-kind', 'unavailable');
  await expect(problem).toContainText('no adapter was found');
  await expect(page.getByTestId('advice')).toContainText('update the driver');
  await expectNoHorizontalOverflow(page);
  await shoot(page, info, 'no-adapter-phone');
  expect(errors, errors.join('\n')).toEqual([]);
});

test('a kernel that returns a wrong value is shown as failed, with its first mismatches', async ({ page }, info) => {
  // Corrupt one value of the first GPU readback, as a broken driver would.
  await page.addInitScript(() => {
    const getMappedRange = GPUBuffer.prototype.getMappedRange;
    let corrupted = false;
    GPUBuffer.prototype.getMappedRange = function (this: GPUBuffer, ...args: Parameters<GPUBuffer['getMappedRange']>) {
      const range = getMappedRange.apply(this, args);
      if (corrupted || range.byteLength < 8) return range;
      corrupted = true;
      const copy = range.slice(0);
      new Float32Array(copy)[1] += 0.5;
      return copy;
    };
  });
  const errors = watchConsole(page);
  await page.setViewportSize(DESKTOP);
  await page.goto('/');
  await page.waitForFunction(() => window.__tesseraSelfTest?.status === 'done', null, { timeout: 100_000 });
  const hook = await selfTestHook(page);
  expect(hook.passed).toBe(false);
  const failing = hook.reports.filter((r) => r.results.some((c) => !c.pass));
  expect(failing.map((r) => r.op)).toHaveLength(1);
  const bad = failing[0].results.find((c) => !c.pass)!;
  expect(bad.mismatchCount).toBe(1);
  expect(bad.firstMismatches[0].index).toBe(1);

  await expect(page.getByTestId('verdict')).toContainText(
    `1 of ${hook.reports.length} kernels failed (${failing[0].op})`,
  );
  const op = page.locator(`tbody.op[data-op="${failing[0].op}"]`);
  await expect(op).toHaveAttribute('data-state', 'fail');
  await expect(op.locator('.op-toggle')).toHaveAttribute('aria-expanded', 'true');
  await expect(op.locator(`tr[data-case="${bad.name}"]`)).toContainText('FAIL');
  await expect(op.locator('.mismatch-row')).toContainText('1 of');
  await expect(op.locator('.mismatches tbody tr')).toHaveCount(1);
  await shoot(page, info, 'selftest-failed-desktop');
  await page.setViewportSize(PHONE);
  await expectNoHorizontalOverflow(page);
  await shoot(page, info, 'selftest-failed-phone');
  expect(errors, errors.join('\n')).toEqual([]);
});
