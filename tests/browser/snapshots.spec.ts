import { createHash, randomBytes } from 'node:crypto';
import { expect, test, type Page } from '@playwright/test';
import type { SnapshotBackend } from '../../src/app/volunteer/snapshot-browser.ts';
import { SNAPSHOTS_KEPT } from '../../src/net/snapshots.ts';
import { DESKTOP, installGpuGate, watchConsole } from './helpers.ts';

/**
 * A tab's stage snapshots (src/app/volunteer/snapshot-browser.ts) on a real page of the built app: OPFS (what
 * Chromium uses) and the IndexedDB fallback, through the store the page itself uses (window.__tesseraSnapshots).
 */

const MODEL = 'tiny/a~b';
const SPEC = 'c0ffee';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
/** Bytes cross into and out of the page as hex (a plain number array of 100 KB is slow to compare). */
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Puts `data` under model MODEL; resolves to the SnapshotInfo. */
const put = (page: Page, backend: SnapshotBackend, stage: number, step: number, data: Uint8Array) =>
  page.evaluate(
    async ({ backend, stage, step, data, model, spec }) => {
      const bytes = Uint8Array.from(data.match(/../g) ?? [], (h) => Number.parseInt(h, 16));
      return (await window.__tesseraSnapshots!(backend)).put({ model, stage, step, specHash: spec }, bytes);
    },
    { backend, stage, step, data: hex(data), model: MODEL, spec: SPEC },
  );

/** get() of MODEL's stage/step: the bytes, absent, or the error's name and message. */
const get = (page: Page, backend: SnapshotBackend, stage: number, step: number) =>
  page.evaluate(
    async ({ backend, stage, step, model }) => {
      try {
        const b = await (await window.__tesseraSnapshots!(backend)).get({ model, stage, step });
        return b === undefined
          ? { absent: true as const }
          : { bytes: Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('') };
      } catch (e) {
        return { error: `${(e as Error).name}: ${(e as Error).message}` };
      }
    },
    { backend, stage, step, model: MODEL },
  );

const list = (page: Page, backend: SnapshotBackend) =>
  page.evaluate(async (b) => (await window.__tesseraSnapshots!(b)).list(), backend);

/** Flips one byte (or truncates) the stored data of MODEL's stage/step, behind the store's back. */
const damage = (page: Page, backend: SnapshotBackend, stage: number, step: number, how: 'flip' | 'truncate') =>
  page.evaluate(
    async ({ backend, how, prefix, model, stage, step }) => {
      const flip = (b: Uint8Array) => {
        const c = b.slice(0, how === 'truncate' ? 100 : b.length);
        if (how === 'flip') c[7] ^= 0xff;
        return c;
      };
      if (backend === 'opfs') {
        const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('tessera-snapshots');
        const entry = JSON.parse(await (await (await dir.getFileHandle(`${prefix}.json`)).getFile()).text());
        const file = await dir.getFileHandle(entry.file);
        const bytes = new Uint8Array(await (await file.getFile()).arrayBuffer());
        const w = await file.createWritable();
        await w.write(flip(bytes));
        await w.close();
        return entry.file as string;
      }
      const open = indexedDB.open('tessera-snapshots');
      const db = await new Promise<IDBDatabase>((ok, fail) => {
        open.onsuccess = () => ok(open.result);
        open.onerror = () => fail(open.error);
      });
      const t = db.transaction(['entries', 'data'], 'readwrite');
      const req = <T>(r: IDBRequest<T>) =>
        new Promise<T>((ok, fail) => {
          r.onsuccess = () => ok(r.result);
          r.onerror = () => fail(r.error);
        });
      const entry = (await req(t.objectStore('entries').getAll())).find(
        (e) => e.model === model && e.stage === stage && e.step === step,
      );
      const bytes = (await req(t.objectStore('data').get(entry.file))) as Uint8Array;
      await req(t.objectStore('data').put(flip(bytes), entry.file));
      db.close();
      return entry.file as string;
    },
    { backend, how, prefix: `tiny%2Fa%7Eb~${stage}~${step}`, model: MODEL, stage, step },
  );

/** Every page load runs the GPU self-test; these checks need no GPU, so the page sees none (SwiftShader is slow). */
async function withoutWebGpu(page: Page): Promise<void> {
  await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
}

test('stage snapshots survive a reload byte for byte; a damaged one is refused; pruned to the newest kept', async ({
  page,
}) => {
  await withoutWebGpu(page);
  const errors = watchConsole(page);
  await page.goto('/#/volunteer');
  const backends: SnapshotBackend[] = ['opfs', 'indexeddb'];
  const a = new Uint8Array(randomBytes(96 * 1024));
  const b = new Uint8Array(randomBytes(40 * 1024));
  for (const backend of backends) {
    await page.evaluate(async (x) => (await window.__tesseraSnapshots!(x)).clear(), backend);
    const info = await put(page, backend, 1, 10, a);
    expect(info).toMatchObject({ model: MODEL, stage: 1, step: 10, specHash: SPEC, bytes: a.length, sha256: sha(a) });
    await put(page, backend, 1, 20, b);
    // A key that names nothing sensible is refused with the reason.
    const bad = await page.evaluate(async (x) => {
      const s = await window.__tesseraSnapshots!(x);
      return s.put({ model: 'm', stage: 0, step: -1, specHash: 'h' }, new Uint8Array(1)).then(
        () => 'stored',
        (e: Error) => `${e.name}: ${e.message}`,
      );
    }, backend);
    expect(bad).toMatch(/^SnapshotError: bad snapshot key .*step -1 is not a whole number/);
  }

  await page.reload();
  expect(await page.evaluate(async () => (await window.__tesseraSnapshots!()).backend)).toBe('opfs');
  for (const backend of backends) {
    const listed = await list(page, backend);
    expect(
      listed.map((x) => [x.model, x.stage, x.step, x.bytes, x.sha256]),
      backend,
    ).toEqual([
      [MODEL, 1, 20, b.length, sha(b)],
      [MODEL, 1, 10, a.length, sha(a)],
    ]);
    expect(await get(page, backend, 1, 10)).toEqual({ bytes: hex(a) });
    expect(await get(page, backend, 1, 20)).toEqual({ bytes: hex(b) });
    expect(await get(page, backend, 1, 30)).toEqual({ absent: true });

    // Damaged behind the store's back: refused, never returned.
    await damage(page, backend, 1, 10, 'flip');
    expect((await get(page, backend, 1, 10)).error, backend).toMatch(/^SnapshotError: .*stage 1@10 .* is corrupt/);
    await damage(page, backend, 1, 20, 'truncate');
    expect((await get(page, backend, 1, 20)).error, backend).toMatch(/^SnapshotError: .*stage 1@20 .* is torn/);

    // Another stage of the model, then more steps of stage 1: only the newest SNAPSHOTS_KEPT of stage 1 stay.
    await put(page, backend, 0, 20, b.subarray(0, 1000));
    for (const step of [30, 40, 50]) await put(page, backend, 1, step, a.subarray(step, step + 2000));
    const kept = (await list(page, backend)).filter((x) => x.stage === 1).map((x) => x.step);
    expect(kept, backend).toEqual([50, 40, 30].slice(0, SNAPSHOTS_KEPT));
    expect(await get(page, backend, 1, 10)).toEqual({ absent: true });
    expect(await get(page, backend, 0, 20)).toEqual({ bytes: hex(b.subarray(0, 1000)) });
    const usage = await page.evaluate(async (x) => (await window.__tesseraSnapshots!(x)).usage(), backend);
    expect(usage.count).toBe(SNAPSHOTS_KEPT + 1);
    expect(usage.bytes).toBeGreaterThanOrEqual(1000 + 2000 * SNAPSHOTS_KEPT);

    await page.evaluate(async (x) => (await window.__tesseraSnapshots!(x)).clear(), backend);
    expect(await list(page, backend)).toEqual([]);
    expect(await page.evaluate(async (x) => (await window.__tesseraSnapshots!(x)).usage(), backend)).toEqual({
      bytes: 0,
      count: 0,
    });
  }

  // OPFS: the pruned and replaced data files are gone too, and a torn write's leftover (a data file no entry
  // names) is swept by the next put of that stage and never listed.
  const files = await page.evaluate(
    async ({ model, spec }) => {
      const s = await window.__tesseraSnapshots!('opfs');
      const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('tessera-snapshots');
      const w = await (await dir.getFileHandle('tiny%2Fa%7Eb~1~60~torn.part', { create: true })).createWritable();
      await w.write(new Uint8Array(500));
      await w.close();
      for (const step of [60, 60, 70, 80, 90])
        await s.put({ model, stage: 1, step, specHash: spec }, new Uint8Array(64));
      const names: string[] = [];
      for await (const n of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(n);
      const listed = (await s.list()).map((x) => x.step);
      await s.clear();
      return { names: names.sort(), listed };
    },
    { model: MODEL, spec: SPEC },
  );
  expect(files.listed).toEqual([90, 80, 70]);
  expect(files.names.filter((n) => n.endsWith('.json'))).toEqual([70, 80, 90].map((s) => `tiny%2Fa%7Eb~1~${s}.json`));
  expect(files.names.filter((n) => !n.endsWith('.json'))).toHaveLength(SNAPSHOTS_KEPT);
  expect(files.names.some((n) => n.includes('torn'))).toBe(false);
  // The page also polls the coordinator's /api, which this static server does not run.
  expect(errors.filter((e) => !e.includes('Failed to load resource'))).toEqual([]);
});

test('the Volunteer page shows the stored stages and clears them, not while the tab volunteers', async ({ page }) => {
  await page.setViewportSize(DESKTOP);
  // Holds the GPU self-test at its first readback, so a join stays "starting" for as long as the test looks.
  await installGpuGate(page);
  await page.goto('/#/volunteer');
  const used = page.getByTestId('vol-storage-used');
  await expect(used).toHaveText('0 bytes · 0 snapshots');
  const clear = page.getByRole('button', { name: 'Clear stored stages' });
  await expect(clear).toBeDisabled();

  // Written through the page's own store, as the worker does: the card follows without a reload.
  await put(page, 'opfs', 1, 40, new Uint8Array(3000));
  await put(page, 'opfs', 0, 30, new Uint8Array(2000));
  await expect(used).toHaveText(/^[\d.]+ KiB · 2 snapshots$/);
  expect(Number(await used.getAttribute('data-bytes'))).toBeGreaterThanOrEqual(5000);
  await expect(page.getByTestId('vol-storage-newest')).toHaveText(`${MODEL}: stage 2 @ step 40`);

  // While the tab volunteers (here: still starting) Clear is refused, and the page says why.
  await page.getByRole('button', { name: 'Join the swarm' }).click();
  await expect(page.getByTestId('vol-status')).toHaveText('Starting');
  await expect(clear).toBeDisabled();
  await expect(page.getByTestId('vol-storage-why')).toHaveText(/^Leave the swarm first/);
  await page.getByRole('button', { name: 'Leave' }).click();
  await expect(page.getByTestId('vol-status')).toHaveText('Stopped');
  await expect(page.getByTestId('vol-storage-why')).toHaveCount(0);

  // Two steps: Clear asks, Cancel keeps everything; Delete empties the storage.
  await clear.click();
  await expect(page.getByText(/^Delete 2 stored snapshots from this browser\?/)).toBeVisible();
  await page.getByRole('button', { name: 'Cancel' }).click();
  await expect(used).toHaveText(/2 snapshots$/);
  await clear.click();
  await page.getByRole('button', { name: 'Delete them' }).click();
  await expect(page.getByTestId('vol-storage-status')).toHaveText(/^Cleared 2 snapshots \([\d.]+ KiB\)\.$/);
  await expect(used).toHaveText('0 bytes · 0 snapshots');
  await expect(page.getByTestId('vol-storage-newest')).toHaveText('—');
  expect(await list(page, 'opfs')).toEqual([]);
  await page.reload();
  await expect(page.getByTestId('vol-storage-used')).toHaveText('0 bytes · 0 snapshots');
});
