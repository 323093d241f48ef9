import type { Gpu } from '../gpu/index.ts';
import type { CheckSize, OpCheck } from './check-kit.ts';
import type { Comparison } from './compare.ts';
import { checkGelu } from './gelu.check.ts';
import { checkLayernorm } from './layernorm.check.ts';
import { checkCrossEntropy } from './crossentropy.check.ts';
import { checkEmbedding } from './embedding.check.ts';
import { checkResidual } from './residual.check.ts';
import { checkAdamW } from './adamw.check.ts';
import { checkGradClip } from './gradclip.check.ts';
import { checkMatmul } from './matmul.check.ts';
import { checkAttention } from './attention.check.ts';
import { checkAttentionNaive } from './attention-naive.check.ts';
import { checkAttentionDecode } from './attention-decode.check.ts';

/**
 * Every op's kernel check, in the order the self-test runs them. The app runs these ('small') on the
 * person's GPU; the browser test runs them in headless Chromium; Node tests run each one ('full').
 * One line per op.
 */
export const OP_CHECKS: Array<[string, OpCheck]> = [
  ['gelu', checkGelu],
  ['layernorm', checkLayernorm],
  ['crossentropy', checkCrossEntropy],
  ['embedding', checkEmbedding],
  ['residual', checkResidual],
  ['adamw', checkAdamW],
  ['gradclip', checkGradClip],
  ['matmul', checkMatmul],
  ['attention-naive', checkAttentionNaive],
  ['attention', checkAttention],
  ['attention-decode', checkAttentionDecode],
];

export interface SelfTestReport {
  op: string;
  results: Comparison[];
  ms: number;
  error?: string;
}

/** Runs the checks one op at a time, reporting progress; an op that throws is reported, not fatal. */
export async function runSelfTest(
  gpu: Gpu,
  size: CheckSize,
  onProgress?: (done: number, total: number, report: SelfTestReport) => void,
  only?: string[],
): Promise<SelfTestReport[]> {
  const checks = only ? OP_CHECKS.filter(([name]) => only.includes(name)) : OP_CHECKS;
  const reports: SelfTestReport[] = [];
  for (const [op, check] of checks) {
    const t0 = performance.now();
    let report: SelfTestReport;
    try {
      report = { op, results: await check(gpu, size), ms: performance.now() - t0 };
    } catch (e) {
      report = { op, results: [], ms: performance.now() - t0, error: `${(e as Error).name}: ${(e as Error).message}` };
    }
    reports.push(report);
    onProgress?.(reports.length, checks.length, report);
  }
  return reports;
}

export function selfTestPassed(reports: SelfTestReport[]): boolean {
  return reports.length > 0 && reports.every((r) => !r.error && r.results.length > 0 && r.results.every((c) => c.pass));
}
