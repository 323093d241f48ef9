import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LedgerStore } from '../../src/coordinator/ledger-store.ts';
import { Settlement } from '../../src/coordinator/settlement.ts';
import { Store } from '../../src/coordinator/store.ts';
import { memoryLog, tempDir, tinyModel } from './fixtures.ts';

/**
 * The settlement timer leaves the steps just recorded to a later epoch: their receipts are still on their way (a
 * reporter's next flush, its back-off after an outage, a restarted worker's outbox), and a receipt of a settled
 * step is refused — settling them at once loses those receipts (seen in `npm run chaos`: a SIGKILLed worker's
 * outbox delivered 4 s after a timer epoch had closed over its steps).
 */
describe('settlement timer lag', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('settles only steps finished a lag ago; an asked-for close settles through the last but one', async () => {
    const store = Store.open(join(tmp.dir, 'lag.db'));
    const ledger = new LedgerStore(store);
    const modelId = 'lag';
    store.insertModel(tinyModel(modelId));
    let now = 100_000;
    // Steps 0..9 done one second apart, from t = 100 s to 109 s.
    for (let s = 0; s < 10; s++)
      store.recordStep({ modelId, step: s, status: 'done', loss: 5, at: 100_000 + s * 1000 });
    now = 112_000;
    const settlement = new Settlement({ store, ledger, now: () => now, log: memoryLog().log, poster: null });
    const epochs = () => new LedgerStore(store).lastEpoch(modelId);
    try {
      settlement.start(20, 5000);
      // Finished by 107 s: steps 0..7.
      await expect.poll(() => epochs()?.throughStep, { timeout: 5000 }).toBe(7);
      // Nothing new old enough: no empty epoch.
      await new Promise((r) => setTimeout(r, 200));
      expect(epochs()?.epoch).toBe(1);
      now = 200_000;
      // Everything is old enough now, yet the last step waits as before (its report may be the only one in).
      await expect.poll(() => epochs()?.throughStep, { timeout: 5000 }).toBe(8);
      expect(epochs()?.epoch).toBe(2);
      settlement.stop();
      await settlement.idle();
      store.recordStep({ modelId, step: 10, status: 'done', loss: 5, at: now });
      store.recordStep({ modelId, step: 11, status: 'done', loss: 5, at: now });
      expect((await settlement.close(modelId)).throughStep).toBe(10);
    } finally {
      settlement.stop();
      await settlement.idle();
      store.close();
    }
  });
});
