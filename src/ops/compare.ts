/**
 * Compares a GPU result with its float64 reference: element i passes when
 * |got − want| ≤ atol + rtol·|want| (and both are finite). Reports the worst error and the first mismatches
 * so a failing kernel says where it went wrong.
 */
export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface Mismatch {
  index: number;
  got: number;
  want: number;
}

export interface Comparison {
  name: string;
  pass: boolean;
  count: number;
  maxAbsErr: number;
  /** Index of the element with the largest |got − want| / (atol + rtol·|want|). */
  worstIndex: number;
  mismatchCount: number;
  firstMismatches: Mismatch[];
  tolerance: Tolerance;
}

export function compare(
  name: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tolerance: Tolerance,
  maxReported = 5,
): Comparison {
  const n = want.length;
  const firstMismatches: Mismatch[] = [];
  let maxAbsErr = 0;
  let worst = -1;
  let worstRatio = -1;
  let mismatchCount = got.length === n ? 0 : Math.abs(got.length - n);
  for (let i = 0; i < Math.min(n, got.length); i++) {
    const g = got[i];
    const w = want[i];
    const err = Math.abs(g - w);
    const bound = tolerance.atol + tolerance.rtol * Math.abs(w);
    const ok = Number.isFinite(g) && Number.isFinite(w) ? err <= bound : Object.is(g, w);
    const ratio = Number.isFinite(err) ? err / bound : Infinity;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worst = i;
    }
    if (Number.isFinite(err)) maxAbsErr = Math.max(maxAbsErr, err);
    else maxAbsErr = Infinity;
    if (!ok) {
      mismatchCount++;
      if (firstMismatches.length < maxReported) firstMismatches.push({ index: i, got: g, want: w });
    }
  }
  return {
    name,
    pass: mismatchCount === 0,
    count: n,
    maxAbsErr,
    worstIndex: worst,
    mismatchCount,
    firstMismatches,
    tolerance,
  };
}

export function describe(c: Comparison): string {
  const head =
    `${c.name}: ${c.pass ? 'ok' : 'FAIL'} (${c.count} values, max |err| ${c.maxAbsErr.toExponential(2)}, ` +
    `tol ${c.tolerance.atol}+${c.tolerance.rtol}·|ref|)`;
  if (c.pass) return head;
  const lines = c.firstMismatches.map(
    (m) => `  [${m.index}] got ${m.got} want ${m.want} (|err| ${Math.abs(m.got - m.want).toExponential(2)})`,
  );
  return [`${head}: ${c.mismatchCount} mismatches; first:`, ...lines].join('\n');
}
