/**
 * The tab's receipt outbox in a real IndexedDB (headless Chromium, /usr/bin/chromium): receipts appended in one
 * page are there after the browser is closed and started again on the same profile (a closed tab, a restarted
 * browser), acknowledged ones are gone, and a record that is not a receipt is skipped with a log line.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from '@playwright/test';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
const ORIGIN = 'http://outbox.test';
// The module as the browser runs it: its imports are types only, so stripping the types leaves plain JS.
const MODULE = stripTypeScriptTypes(readFileSync(join(ROOT, 'src/ledger/outbox-idb.ts'), 'utf8'));
const PAGE =
  '<!doctype html><title>outbox</title><script type="module">' +
  "import { IndexedDbOutbox } from '/outbox-idb.js'; window.IndexedDbOutbox = IndexedDbOutbox;</script>";

declare global {
  interface Window {
    /** The class as the page loaded it (untyped JS). */
    IndexedDbOutbox: any;
  }
}

async function browser(profile: string): Promise<BrowserContext> {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--headless=new'],
  });
  await context.route(`${ORIGIN}/**`, (route) => {
    const js = route.request().url().endsWith('.js');
    return route.fulfill({
      contentType: js ? 'text/javascript' : 'text/html',
      // The page exposes the class (an import() inside page.evaluate would be rewritten by Vitest's transform).
      body: js ? MODULE : PAGE,
    });
  });
  return context;
}

describe('IndexedDB receipt outbox', () => {
  const profile = mkdtempSync(join(tmpdir(), 'tessera-outbox-idb-'));
  afterAll(() => rmSync(profile, { recursive: true, force: true }));

  it('keeps unacknowledged receipts across a closed browser, forgets acknowledged ones', async () => {
    let context = await browser(profile);
    let page = await context.newPage();
    await page.goto(`${ORIGIN}/`);
    await page.waitForFunction(() => window.IndexedDbOutbox !== undefined);
    const first = await page.evaluate(async () => {
      const { IndexedDbOutbox } = window;
      const outbox = new IndexedDbOutbox();
      const receipt = (step: number) => ({
        model: 'm',
        round: 1,
        stage: 0,
        replica: 0,
        replicas: 1,
        step,
        micro: 0,
        kind: 'train',
        flops: 1,
        inputHash: '0x00',
        outputHash: '0x01',
        peerId: 'p',
      });
      const a = await outbox.append([receipt(0), receipt(1), receipt(2)]);
      await outbox.remove([a[1].id]);
      const b = await outbox.append([receipt(3)]);
      // Something else wrote into the store.
      await new Promise<void>((resolve, reject) => {
        const req = indexedDB.open('tessera-receipts', 1);
        req.onsuccess = () => {
          const tx = req.result.transaction('outbox', 'readwrite');
          tx.objectStore('outbox').add({ not: 'a receipt' });
          tx.oncomplete = () => {
            req.result.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
        req.onerror = () => reject(req.error);
      });
      return [...a, ...b].map((e: { id: number }) => e.id);
    });
    expect(first).toHaveLength(4);
    expect(new Set(first).size).toBe(4);
    // The tab closes without any goodbye, then the whole browser.
    await page.close({ runBeforeUnload: false });
    await context.close();

    context = await browser(profile);
    page = await context.newPage();
    await page.goto(`${ORIGIN}/`);
    await page.waitForFunction(() => window.IndexedDbOutbox !== undefined);
    const after = await page.evaluate(async () => {
      const { IndexedDbOutbox } = window;
      const logs: string[] = [];
      const outbox = new IndexedDbOutbox((l: string) => logs.push(l));
      const loaded = await outbox.load();
      const again = await new IndexedDbOutbox().load();
      const more = await outbox.append([{ ...loaded[0].receipt, step: 4 }]);
      return {
        steps: loaded.map((e: { receipt: { step: number } }) => e.receipt.step),
        ids: loaded.map((e: { id: number }) => e.id),
        logs,
        again: again.length,
        next: more[0].id,
      };
    });
    await context.close();
    expect(after.steps).toEqual([0, 2, 3]);
    expect(after.ids).toEqual([first[0], first[2], first[3]]);
    expect(after.logs.some((l) => /not a receipt/.test(l))).toBe(true);
    expect(after.again).toBe(3);
    expect(after.next).toBeGreaterThan(Math.max(...first));
  }, 60_000);
});
