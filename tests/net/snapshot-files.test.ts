import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SnapshotFiles } from '../../src/net/snapshot-files.ts';
import { SNAPSHOTS_KEPT, SnapshotError, specHash } from '../../src/net/snapshots.ts';
import { snapshotBytes } from './fixtures/snapshot-bytes.ts';
import { spawnTs } from './worker-processes.ts';

const fresh = () => new SnapshotFiles(mkdtempSync(join(tmpdir(), 'tessera-snap-')));

describe('SnapshotFiles', () => {
  it('gives back what was put, newest step first, and prunes each stage to the newest few', async () => {
    const store = fresh();
    for (let step = 5; step <= 30; step += 5)
      for (const stage of [0, 1])
        await store.put({ model: 'm1', stage, step, specHash: 'h' }, snapshotBytes(step, 999));
    const listed = await store.list('m1');
    expect(listed.map((x) => `${x.stage}@${x.step}`)).toEqual(
      [30, 25, 20].slice(0, SNAPSHOTS_KEPT).flatMap((s) => [`0@${s}`, `1@${s}`]),
    );
    expect(await store.get({ model: 'm1', stage: 1, step: 25 })).toEqual(snapshotBytes(25, 999));
    expect(await store.get({ model: 'm1', stage: 1, step: 5 })).toBeUndefined();
    expect(await store.usage()).toEqual({ bytes: 999 * 2 * SNAPSHOTS_KEPT, count: 2 * SNAPSHOTS_KEPT });
    await store.clear();
    expect(await store.list()).toEqual([]);
  });

  it('refuses a checkpoint whose bytes no longer match its manifest, and a key that is not path-safe', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-snap-'));
    const store = new SnapshotFiles(dir);
    await store.put({ model: 'm1', stage: 0, step: 10, specHash: 'h' }, snapshotBytes(10, 64));
    const file = join(dir, 'snapshots/m1/stage-0/step-10.ckpt');
    const bad = snapshotBytes(10, 64);
    bad[3] ^= 1;
    writeFileSync(file, bad);
    await expect(store.get({ model: 'm1', stage: 0, step: 10 })).rejects.toThrow(SnapshotError);
    await expect(store.get({ model: 'm1', stage: 0, step: 10 })).rejects.toThrow(/does not match its manifest/);
    await expect(store.put({ model: '../x', stage: 0, step: 1, specHash: 'h' }, bad)).rejects.toThrow(SnapshotError);
  });

  it('hashes a RunSpec the same whatever the order of its keys', async () => {
    expect(await specHash({ a: 1, b: { c: [1, 2], d: 'x' } })).toBe(await specHash({ b: { d: 'x', c: [1, 2] }, a: 1 }));
    expect(await specHash({ a: 1 })).not.toBe(await specHash({ a: 2 }));
  });

  it('SIGKILLed at random moments while writing: every snapshot listed afterwards reads back intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-snap-'));
    const size = 3 << 20;
    let lastPut = 0;
    for (let round = 0; round < 4; round++) {
      const child = spawnTs(['tests/net/fixtures/snapshot-writer.ts', dir, String(size)]);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      // Wait for at least one write of this process, then kill it somewhere inside a later one.
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (out.includes('put ')) {
            clearInterval(t);
            setTimeout(resolve, 20 + Math.random() * 200);
          }
        }, 10);
      });
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const puts = [...out.matchAll(/put (\d+)/g)].map((m) => Number(m[1]));
      lastPut = Math.max(...puts);
      const store = new SnapshotFiles(dir);
      const listed = await store.list('m1');
      // The last acknowledged write is durable, and nothing torn is ever listed.
      expect(listed[0].step).toBeGreaterThanOrEqual(lastPut);
      for (const x of listed) expect(await store.get(x)).toEqual(snapshotBytes(x.step, size));
    }
    // Temporary files of killed writes do not pile up: the next write of the stage removes them.
    const left = readdirSync(join(dir, 'snapshots/m1/stage-0')).filter((f) => f.startsWith('.tmp-'));
    expect(left.length).toBeLessThanOrEqual(2);
  }, 120_000);
});
