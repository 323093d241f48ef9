/**
 * The 1F1B (one-forward-one-backward) schedule of PipeDream-Flush / Megatron: stage s of N first runs
 * min(N − s − 1, M) warm-up forwards, then alternates one forward and one backward, then drains the
 * remaining backwards. At most N − s micro-batches are in flight on stage s (memory bound), and the bubble
 * is (N − 1)/(M + N − 1) of the step, as for GPipe, but with far less activation memory.
 */
export interface ScheduleOp {
  op: 'F' | 'B';
  micro: number;
}

export function oneFOneB(stage: number, numStages: number, micros: readonly number[]): ScheduleOp[] {
  const warmup = Math.min(numStages - stage - 1, micros.length);
  const ops: ScheduleOp[] = [];
  let f = 0;
  let b = 0;
  for (; f < warmup; f++) ops.push({ op: 'F', micro: micros[f] });
  while (f < micros.length) {
    ops.push({ op: 'F', micro: micros[f++] });
    ops.push({ op: 'B', micro: micros[b++] });
  }
  while (b < micros.length) ops.push({ op: 'B', micro: micros[b++] });
  return ops;
}

/** The ideal 1F1B bubble fraction for N stages and M micro-batches. */
export function idealBubble(numStages: number, microBatches: number): number {
  return (numStages - 1) / (microBatches + numStages - 1);
}

/** One operation of a stage in the asynchronous schedule: forward/backward of (step, micro), or an update. */
export type AsyncOp =
  | {
      op: 'F';
      step: number;
      micro: number /** Optimizer steps this forward's weights lag behind its step. */;
      delay: number;
    }
  | { op: 'B'; step: number; micro: number }
  | { op: 'U'; step: number };

/**
 * The asynchronous 1F1B schedule (PipeDream-style, no flush between optimizer steps) with bounded staleness:
 * a stage keeps at most N − s micro-batches in flight, prefers a forward when one is allowed, and applies
 * update U(k) as soon as its last backward of step k is done. A forward of step k may run on weights that
 * lack at most `staleness` of the stage's own updates (k − updatesApplied ≤ staleness). With staleness 0
 * this is exactly the synchronous 1F1B schedule of each step in turn; with 1 the next step's warm-up
 * forwards fill the drain of the current one, so a stage no longer idles between steps.
 *
 * `micros[k]` lists the micro-batches of step k this worker serves (a replica serves a subset).
 */
export function asyncOneFOneB(
  stage: number,
  numStages: number,
  micros: readonly (readonly number[])[],
  staleness: number,
): AsyncOp[] {
  if (!Number.isInteger(staleness) || staleness < 0)
    throw new RangeError(`staleness must be an integer ≥ 0, got ${staleness}`);
  const items = micros.flatMap((ms, step) => ms.map((micro) => ({ step, micro })));
  const pending = micros.map((ms) => ms.length);
  const limit = numStages - stage;
  const ops: AsyncOp[] = [];
  let version = 0;
  const updates = () => {
    while (version < micros.length && pending[version] === 0) ops.push({ op: 'U', step: version++ });
  };
  updates();
  let f = 0;
  let b = 0;
  while (b < items.length) {
    const next = items[f];
    if (f < items.length && f - b < limit && next.step - version <= staleness) {
      ops.push({ op: 'F', step: next.step, micro: next.micro, delay: next.step - version });
      f++;
    } else {
      // Nothing in flight means the forward was refused for staleness with every backward done: impossible,
      // because then every earlier step's update has been applied.
      if (f === b) throw new Error('asyncOneFOneB: schedule stalled (bug)');
      const it = items[b++];
      ops.push({ op: 'B', step: it.step, micro: it.micro });
      pending[it.step]--;
      updates();
    }
  }
  return ops;
}
