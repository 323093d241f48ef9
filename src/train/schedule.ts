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
