/**
 * A worker-like process for tests/ledger/outbox.test.ts: the real ReceiptReporter over a FileOutbox, signing with
 * a key file, as src/cli/worker.ts wires it.
 *
 *   node --import ./scripts/register.ts tests/ledger/outbox-child.ts <mode> <json options>
 *
 * mode 'queue': adds receipts forever (`perStep` units a step, steps cycling through `steps`), flushing to `url`
 *   after each burst, and prints `queued <n>` once the outbox holds n of them: the parent SIGKILLs it.
 * mode 'drain': sends what the outbox holds, retrying until every receipt is answered, prints
 *   `done <stats json>` and exits.
 */
import { FileOutbox } from '../../src/ledger/outbox-file.ts';
import { ReceiptReporter } from '../../src/ledger/reporter.ts';
import { loadOrCreateKey } from '../../src/net/identity-node.ts';
import type { WorkContext } from '../../src/train/work.ts';

interface ChildOptions {
  key: string;
  outbox: string;
  url: string;
  peerId: string;
  context: WorkContext;
  steps: number;
  perStep: number;
}

const [mode, raw] = process.argv.slice(2);
const o = JSON.parse(raw) as ChildOptions;
const key = await loadOrCreateKey(o.key);
const outbox = new FileOutbox(o.outbox, (l) => console.log(l));
const reporter = new ReceiptReporter({
  key,
  peerId: o.peerId,
  coordinatorUrl: o.url,
  outbox,
  maxBackoffMs: 200,
  log: (l) => console.log(l),
});
const hash = (n: number) => `0x${n.toString(16).padStart(64, '0')}`;

if (mode === 'queue') {
  for (let i = 0; ; i++) {
    const step = Math.floor(i / o.perStep) % o.steps;
    // Past the first lap, micro-batch numbers keep growing so every unit stays distinct.
    const micro = (i % o.perStep) + o.perStep * Math.floor(i / (o.perStep * o.steps));
    reporter.add({ kind: 'train', step, micro, inputHash: hash(i * 2), outputHash: hash(i * 2 + 1) }, o.context);
    if (i % 25 === 24) {
      await reporter.flush();
      console.log(`queued ${outbox.size}`);
    }
  }
} else {
  await reporter.ready;
  reporter.start(50);
  while (reporter.unacknowledged > 0) await new Promise((r) => setTimeout(r, 50));
  await reporter.stop();
  console.log(`done ${JSON.stringify({ ...reporter.stats, left: outbox.size })}`);
  process.exit(0);
}
