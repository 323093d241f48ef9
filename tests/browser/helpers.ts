import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import { expect, type Page, type TestInfo } from '@playwright/test';
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { CHROMIUM_ARGS } from '../../playwright.config.ts';
import type { SelfTestHook } from '../../src/app/test-hooks.ts';

export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

/** Console errors and uncaught exceptions, collected from the moment it is called. */
export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.name}: ${e.message}`));
  return errors;
}

/**
 * HTTP answers of 400 and up the page received, as "STATUS METHOD /path", from the moment it is called: the
 * browser logs each as "Failed to load resource", so a test says which refusals it provoked on purpose.
 */
export function watchRefusals(page: Page): string[] {
  const refusals: string[] = [];
  page.on('response', (r) => {
    if (r.status() >= 400) refusals.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  return refusals;
}

/** Full-page screenshot to test-results/screenshots/<name>.png, also attached to the test's report. */
export async function shoot(page: Page, info: TestInfo, name: string): Promise<void> {
  mkdirSync('test-results/screenshots', { recursive: true });
  const path = `test-results/screenshots/${name}.png`;
  await page.screenshot({ path, fullPage: true, animations: 'disabled' });
  await info.attach(name, { path, contentType: 'image/png' });
}

/** The page must not be wider than the viewport (scrolling inside a table wrapper is fine). */
export async function expectNoHorizontalOverflow(page: Page): Promise<void> {
  const { scroll, client, culprits } = await page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const culprits = [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > vw + 0.5 && !el.closest('.table-wrap'))
      .slice(0, 5)
      .map(
        (el) =>
          `${el.tagName.toLowerCase()}.${(el as HTMLElement).className} ` +
          `right=${Math.round(el.getBoundingClientRect().right)}`,
      );
    return { scroll: document.documentElement.scrollWidth, client: vw, culprits };
  });
  expect(
    scroll,
    `page is ${scroll}px wide in a ${client}px viewport; widest: ${culprits.join(', ')}`,
  ).toBeLessThanOrEqual(client);
}

export async function selfTestHook(page: Page): Promise<SelfTestHook> {
  const hook = await page.evaluate(() => window.__tesseraSelfTest);
  if (!hook) throw new Error('the page did not publish window.__tesseraSelfTest');
  return hook;
}

/** The op names registered in src/ops/selftest.ts, read from the source so a stale build cannot hide an op. */
export function registeredOpsInSource(): string[] {
  const src = readFileSync('src/ops/selftest.ts', 'utf8');
  const list = /OP_CHECKS[^=]*=\s*\[([\s\S]*?)\n\];/.exec(src)?.[1];
  if (!list) throw new Error('could not find the OP_CHECKS list in src/ops/selftest.ts');
  return [...list.matchAll(/^\s*\[\s*'([^']+)'\s*,/gm)].map((m) => m[1]);
}

/**
 * Holds every GPU→CPU readback (GPUBuffer.mapAsync) until the test calls `releaseGpuReads(page)`, so a
 * state that normally lasts milliseconds (self-test running) can be looked at. Also keeps each GPUDevice
 * on `window.__devices` so a test can destroy it. Must be added before the page loads.
 */
export async function installGpuGate(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const w = window as unknown as { __releaseGpuReads: () => void; __devices: GPUDevice[] };
    const gate = new Promise<void>((resolve) => (w.__releaseGpuReads = resolve));
    w.__devices = [];
    if (!('GPUBuffer' in window)) return;
    const mapAsync = GPUBuffer.prototype.mapAsync;
    GPUBuffer.prototype.mapAsync = async function (this: GPUBuffer, ...args: Parameters<GPUBuffer['mapAsync']>) {
      await gate;
      return mapAsync.apply(this, args);
    };
    const requestDevice = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (
      this: GPUAdapter,
      ...args: Parameters<GPUAdapter['requestDevice']>
    ) {
      const device = await requestDevice.apply(this, args);
      w.__devices.push(device);
      return device;
    };
  });
}

export async function releaseGpuReads(page: Page): Promise<void> {
  await page.evaluate(() => (window as unknown as { __releaseGpuReads: () => void }).__releaseGpuReads());
}

/** Stores the tab's key where src/net/identity-browser.ts looks for it (the page must be on the app's origin). */
export async function storeTabKey(page: Page, key: Uint8Array): Promise<void> {
  await page.evaluate(
    async (bytes) => {
      const open = indexedDB.open('tessera-identity', 1);
      open.onupgradeneeded = () => open.result.createObjectStore('keys');
      const db = await new Promise<IDBDatabase>(
        (ok, fail) => ((open.onsuccess = () => ok(open.result)), (open.onerror = () => fail(open.error))),
      );
      const put = db.transaction('keys', 'readwrite').objectStore('keys').put(Uint8Array.from(bytes), 'peer-key');
      await new Promise((ok, fail) => ((put.onsuccess = ok), (put.onerror = () => fail(put.error))));
      db.close();
    },
    [...key],
  );
}

/** Stops a test server process: SIGTERM (it cleans up), SIGKILL after 5 s. */
export async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * `n` identities (protobuf private keys) sorted by peer id: give the tab the first, so the Node workers' ids sort
 * after it and they dial the tab.
 * WORKAROUND for a race in SwarmWorker (src/net/swarm-worker.ts at the time of writing): the larger id dials as
 * soon as its own stage is ready, and a tab with the corpus already cached is often ready before the Node worker
 * has registered /tessera/tensor/1.0.0; its first frame then fails protocol selection ("na") and the step times
 * out after 60 s. Remove once workers wait until their pipeline peers are ready.
 */
export async function orderedKeys(n: number): Promise<Array<{ key: Uint8Array; id: string }>> {
  const keys = await Promise.all(Array.from({ length: n }, () => generateKeyPair('Ed25519')));
  return keys
    .map((k) => ({ key: privateKeyToProtobuf(k), id: peerIdFromPrivateKey(k).toString() }))
    .sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** Two ordered identities: the tab's, then a worker's. */
export async function tabAndWorkerKeys(): Promise<{ tab: Uint8Array; worker: Uint8Array; tabId: string }> {
  const [tab, worker] = await orderedKeys(2);
  return { tab: tab.key, worker: worker.key, tabId: tab.id };
}

/**
 * A MetaMask-like window.ethereum on anvil's chain with one unlocked dev account: the account and chain questions
 * are answered here, everything else (personal_sign, eth_sendTransaction, reads) goes to anvil, which signs and
 * sends. `window.__walletCalls` lists the methods the page asked for. Must be added before the page loads.
 */
export async function injectAnvilWallet(
  page: Page,
  o: { rpcUrl: string; chainId: number; account: string },
): Promise<void> {
  await page.addInitScript((o) => {
    let id = 0;
    const w = window as unknown as { __walletCalls: string[]; ethereum: unknown };
    w.__walletCalls = [];
    w.ethereum = {
      async request({ method, params }: { method: string; params?: unknown[] }) {
        w.__walletCalls.push(method);
        if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [o.account];
        if (method === 'eth_chainId') return `0x${o.chainId.toString(16)}`;
        if (method === 'wallet_requestPermissions' || method === 'wallet_revokePermissions') return [];
        const res = await fetch(o.rpcUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params: params ?? [] }),
        });
        const j = (await res.json()) as { result?: unknown; error?: { code: number; message: string } };
        if (j.error) throw Object.assign(new Error(j.error.message), { code: j.error.code });
        return j.result;
      },
      on() {},
      removeListener() {},
    };
  }, o);
}

export const NODE = 'node_modules/.bin/node';

/**
 * Chromium hides host candidates behind mDNS names this machine cannot resolve, and never offers 127.0.0.1:
 * with real IPs a tab reaches Node peers over the machine's non-loopback interface. For `test.use`.
 */
export const REAL_HOST_CANDIDATES = {
  launchOptions: {
    executablePath: '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS, '--disable-features=WebRtcHideLocalIpsWithMdns'],
  },
};

export const json = async <T>(url: string, init?: RequestInit): Promise<T> =>
  (await fetch(url, init)).json() as Promise<T>;

/** `node --import ./scripts/register.ts …args`, each line it writes kept in `logs` as `[name] line`. */
export function spawnLogged(args: string[], logs: string[], name: string, env: Record<string, string> = {}) {
  const child = spawn(NODE, ['--import', './scripts/register.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const keep = (d: Buffer) =>
    logs.push(
      ...String(d)
        .split('\n')
        .filter(Boolean)
        .map((l) => `[${name}] ${l}`),
    );
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

/** The first stdout line of `child` starting with `prefix`, parsed as JSON; rejects if it exits first. */
export function jsonLine<T>(child: ChildProcess, prefix: string, logs: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      const found = out.split('\n').find((l) => l.startsWith(prefix));
      if (found) resolve(JSON.parse(found.slice(prefix.length)) as T);
    });
    child.once('exit', (code) =>
      reject(new Error(`process exited with ${code} before "${prefix}":\n${logs.slice(-60).join('\n')}`)),
    );
  });
}

/** What tests/browser/swarm-server.ts prints on its READY line. */
export interface SwarmServer {
  coordinator: string;
  app: string;
  modelId: string;
}

/**
 * tests/browser/swarm-server.ts (a coordinator serving the built app, a 2-stage model) and one `npm run worker`
 * process whose peer id sorts after the tab's (`keys.tab`), both logged to `logs`. Each process goes into
 * `children` as it is spawned, so the caller's `stopAll` stops it even when starting fails.
 */
export async function startSwarmAndWorker(dir: string, logs: string[], children: ChildProcess[]) {
  const server = spawnLogged(['tests/browser/swarm-server.ts', '--db', join(dir, 'coordinator.db')], logs, 'server');
  children.push(server);
  const fx = await jsonLine<SwarmServer>(server, 'READY ', logs);
  const keys = await tabAndWorkerKeys();
  writeFileSync(join(dir, 'worker.key'), keys.worker, { mode: 0o600 });
  const args = ['--coordinator', fx.coordinator, '--key', join(dir, 'worker.key'), '--tokens-per-second', '1000'];
  children.push(spawnLogged(['src/cli/worker.ts', ...args], logs, 'worker'));
  return { fx, keys };
}

/** Stops test processes, the last started first. */
export async function stopAll(children: ChildProcess[]): Promise<void> {
  for (const c of [...children].reverse()) await stopProcess(c);
}

/** Until the volunteer tab has trained `steps` steps, or failed. */
export async function volunteerSteps(page: Page, steps: number, timeout: number): Promise<void> {
  await page.waitForFunction(
    (n) => (window.__tesseraVolunteer?.stepsDone ?? 0) >= n || window.__tesseraVolunteer?.status === 'error',
    steps,
    { timeout },
  );
}

/** axe over the whole page: serious and critical violations fail, with what and where. */
export async function scanAxe(page: Page, info: TestInfo, name: string): Promise<void> {
  const result = await new AxeBuilder({ page })
    .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'])
    .analyze();
  await info.attach(`axe-${name}.json`, {
    body: JSON.stringify(result.violations, null, 2),
    contentType: 'application/json',
  });
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(
    bad.map(
      (v) =>
        `${v.id} (${v.impact}): ${v.help} — ${v.nodes
          .slice(0, 3)
          .map((n) => n.target.join(' '))
          .join(' | ')}`,
    ),
    `axe on ${name}`,
  ).toEqual([]);
}
