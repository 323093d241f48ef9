/**
 * The slow suites, named in one place: `npm test` runs them all, `npm run test:fast` (the inner loop) skips
 * these. Each takes from tens of seconds to minutes on a 2-core machine, because it starts real processes,
 * WebRTC connections, anvil or Chromium, or trains a model.
 */
export const SLOW_UNIT_SUITES = [
  'tests/train/learning.test.ts', // ~2 min: the recipe learns the Brown corpus well below the unigram baseline
  'tests/net/swarm.test.ts', // ~30 s: coordinator + two worker processes over WebRTC equal one process
  'tests/net/churn.test.ts', // ~80 s: kills, newcomers and a lost reporter; every step exactly once
  'tests/net/durable.test.ts', // ~90 s: every holder SIGKILLed, restarted: resume from snapshots, curve goes on
  'tests/net/leave.test.ts', // ~40 s: SIGTERM of a stage's only holder hands the stage to its successor
  'tests/net/snapshot-files.test.ts', // ~15 s: a snapshot writer SIGKILLed at random moments, four times
  'tests/net/outage.test.ts', // ~2 min: a coordinator SIGKILLed for 15 s mid-training; workers pause, go on
  'tests/net/relay-reservation.test.ts', // ~20 s: peers re-reserve on a restarted relay; newcomers reach them
  'tests/net/relay-restart.test.ts', // ~75 s: coordinator SIGKILLed and restarted; a third worker joins and trains
  'tests/ledger/ownership.test.ts', // ~30 s: receipts, audits, a caught cheater, settlement on anvil
  'tests/infer/swarm-generation.test.ts', // ~40 s: generation through four stage-holding workers
  'tests/infer/no-weights-leak.test.ts', // ~40 s: every received byte scanned for another stage's weights
  'tests/train/gpu-turns.test.ts', // ~15 s: inference/training priority and the duty cycle on a pipeline
  'tests/coordinator/settlement-crash.test.ts', // ~25 s: settling processes SIGKILLed mid-transaction, on anvil
  'tests/ledger/outbox.test.ts', // ~15 s: a SIGKILLed worker's receipts credited once after a coordinator restart
  'tests/ledger/outbox-idb.test.ts', // ~12 s: the tab's IndexedDB outbox across two Chromium launches
  'tests/chaos.test.ts', // ~5 min: npm run chaos shortened, six seeded faults, every invariant checked
];

/** Browser specs left out of the fast loop (gpu-page.spec.ts, the kernel self-test in Chromium, stays in). */
export const SLOW_BROWSER_SPECS = [
  'tests/browser/volunteer.spec.ts',
  'tests/browser/holder.spec.ts',
  'tests/browser/infer-tab.spec.ts',
  'tests/browser/researcher.spec.ts',
  'tests/browser/tour.spec.ts',
];
