/**
 * What the kernel benchmark measures and how: the case lists, the time budgets that make sizes adapt to the
 * adapter, the run planner (warm-up, repeats, skip), and the result types shared by the browser page, the
 * Node runner, the table printer and bench/results/kernels.json. Runs unchanged in Node and in the browser.
 */

export interface MatmulCase {
  id: string;
  /** 'transformer' cases are the ones the ≥ 1.0× target is about; 'square' ones are the classic sweep. */
  group: 'transformer' | 'square';
  /** Human label, e.g. "FFN up  X[512×768]·W[768×3072]". */
  label: string;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** Priority: tier 1 (forward shapes, squares ≤ 1024) first, then 2 (training shapes at d ≤ 512, 2048²), then 3. */
  tier: 1 | 2 | 3;
}

export interface AttentionCase {
  id: string;
  batch: number;
  seq: number;
  heads: number;
  channels: number;
}

/** Tokens per matmul in the transformer-shaped cases (e.g. 4 sequences × 128, or 1 × 512). */
export const TOKENS = 512;
export const D_MODELS = [256, 512, 768, 1024];
export const SQUARES = [256, 512, 1024, 2048];
export const ATTENTION_T = [128, 256, 512, 1024, 2048];
export const ATTENTION_SHAPE = { batch: 1, heads: 4, channels: 256 };

export function matmulFlopsOf(c: Pick<MatmulCase, 'M' | 'N' | 'K'>): number {
  return 2 * c.M * c.N * c.K;
}

export function matmulCases(): MatmulCase[] {
  const T = TOKENS;
  const out: MatmulCase[] = [];
  for (const d of D_MODELS) {
    const h = 4 * d;
    out.push(
      {
        id: `up-${d}`,
        group: 'transformer',
        tier: 1,
        M: T,
        K: d,
        N: h,
        transA: false,
        transB: false,
        label: `FFN up     X[${T}×${d}]·W[${d}×${h}]`,
      },
      {
        id: `down-${d}`,
        group: 'transformer',
        tier: 1,
        M: T,
        K: h,
        N: d,
        transA: false,
        transB: false,
        label: `FFN down   H[${T}×${h}]·W[${h}×${d}]`,
      },
      // Backward of FFN up: dX = dY·Wᵀ and dW = Xᵀ·dY, the transposed forms training runs every step.
      {
        id: `dx-${d}`,
        group: 'transformer',
        tier: d <= 512 ? 2 : 3,
        M: T,
        K: h,
        N: d,
        transA: false,
        transB: true,
        label: `FFN up dX  dY[${T}×${h}]·Wᵀ, W[${d}×${h}]`,
      },
      {
        id: `dw-${d}`,
        group: 'transformer',
        tier: d <= 512 ? 2 : 3,
        M: d,
        K: T,
        N: h,
        transA: true,
        transB: false,
        label: `FFN up dW  Xᵀ·dY, X[${T}×${d}], dY[${T}×${h}]`,
      },
    );
  }
  for (const n of SQUARES) {
    out.push({
      id: `sq-${n}`,
      group: 'square',
      tier: n <= 1024 ? 1 : 2,
      M: n,
      N: n,
      K: n,
      transA: false,
      transB: false,
      label: `square     ${n}×${n}·${n}×${n}`,
    });
  }
  return out;
}

export function attentionCases(): AttentionCase[] {
  return ATTENTION_T.map((seq) => ({ id: `attn-${seq}`, seq, ...ATTENTION_SHAPE }));
}

/** Execution order: by tier, then cheapest first, so every rate estimate comes from a smaller run. */
export function executionOrder(cases: MatmulCase[]): MatmulCase[] {
  return [...cases].sort((a, b) => a.tier - b.tier || matmulFlopsOf(a) - matmulFlopsOf(b) || a.id.localeCompare(b.id));
}

// ---- budgets and planning -----------------------------------------------------------------------

export interface Budget {
  /** A case is skipped for an implementation when warm-up + minRepeats runs would take longer than this. */
  perCaseS: number;
  /**
   * The same for our variants the selector does not pick for the shape (informational columns), except on
   * the first case of each group they run in, where they get perCaseS so that every column has a figure.
   */
  secondaryPerCaseS: number;
  /** Timed repeats continue (up to maxRepeats) while they fit in this many seconds. */
  repeatS: number;
  /** Seconds for the whole matmul sweep / attention sweep in this environment. */
  matmulS: number;
  attentionS: number;
  /** Attention sizes too slow to time still get one memory-measuring run when it is estimated under this. */
  memoryOnlyS: number;
  warmup: number;
  minRepeats: number;
  maxRepeats: number;
}

export const BROWSER_BUDGET: Budget = {
  perCaseS: 40,
  secondaryPerCaseS: 5,
  repeatS: 1.5,
  matmulS: 260,
  attentionS: 40,
  memoryOnlyS: 12,
  warmup: 1,
  minRepeats: 3,
  maxRepeats: 30,
};
export const NODE_BUDGET: Budget = {
  perCaseS: 20,
  secondaryPerCaseS: 5,
  repeatS: 1.5,
  matmulS: 130,
  attentionS: 60,
  memoryOnlyS: 40,
  warmup: 1,
  minRepeats: 3,
  maxRepeats: 30,
};

export function scaleBudget(b: Budget, k: number): Budget {
  return {
    ...b,
    perCaseS: b.perCaseS * k,
    secondaryPerCaseS: b.secondaryPerCaseS * k,
    repeatS: b.repeatS * k,
    matmulS: b.matmulS * k,
    attentionS: b.attentionS * k,
    memoryOnlyS: b.memoryOnlyS * k,
  };
}

export interface Skip {
  env: 'browser' | 'node';
  case: string;
  impl: string;
  reason: string;
}

/**
 * Decides whether an implementation runs a case, from its last measured rate (GFLOP/s) and what is left of
 * the sweep budget. Returns a reason when it does not.
 */
export function planOrSkip(
  flops: number,
  rateGflops: number | undefined,
  b: Budget,
  sweepLeftS: number,
  secondary = false,
): { estS?: number; skip?: string } {
  if (rateGflops === undefined || !(rateGflops > 0)) return {};
  const estS = flops / (rateGflops * 1e9);
  const need = estS * (b.warmup + b.minRepeats);
  const perCase = secondary ? b.secondaryPerCaseS : b.perCaseS;
  if (need > perCase) {
    return {
      estS,
      skip:
        `est. ${fmtS(estS)}/run at ${rateGflops.toFixed(2)} GFLOP/s × ${b.warmup + b.minRepeats} runs > ` +
        `${perCase} s ${secondary ? 'budget for variants not picked for this shape' : 'per-case budget'}`,
    };
  }
  if (need > sweepLeftS) {
    return {
      estS,
      skip:
        `est. ${fmtS(need)} for ${b.warmup + b.minRepeats} runs > ${fmtS(Math.max(0, sweepLeftS))} left of ` +
        `the sweep budget`,
    };
  }
  return { estS };
}

export function fmtS(s: number): string {
  return s >= 10 ? `${s.toFixed(0)} s` : s >= 1 ? `${s.toFixed(1)} s` : `${(s * 1000).toFixed(0)} ms`;
}

/**
 * Rate (GFLOP/s) to predict the next, larger size from: the median over the largest size measured so far
 * (rates grow with size on the adapters seen, and the median keeps one odd shape from steering it).
 */
export function estimateRate(
  history: ReadonlyArray<{ flops: number; gflops: number }> | undefined,
): number | undefined {
  if (!history?.length) return undefined;
  const top = Math.max(...history.map((h) => h.flops));
  return median(history.filter((h) => h.flops === top).map((h) => h.gflops));
}

// ---- statistics ---------------------------------------------------------------------------------

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Sample {
  /** Median of the timed repeats (ms), by this implementation's timing source. */
  ms: number;
  minMs: number;
  maxMs: number;
  repeats: number;
  gflops: number;
  /** Wall-clock median (ms) around each run including its sync, when measured alongside. */
  wallMs?: number;
  wallGflops?: number;
  /** How `ms` was measured. */
  source: string;
  /** Backend the implementation actually ran on (e.g. 'webgpu', 'wasm', 'cpu'). */
  backend: string;
  /** Max |out - ours| / max |ours| on the warm-up output, when compared. */
  relErr?: number;
  /** Max |out - float64 reference| / max |reference| over 256 seeded output positions of the warm-up output. */
  refErr?: number;
  note?: string;
}

export function summarize(msList: number[], flops: number, source: string, backend: string, wall?: number[]): Sample {
  const ms = median(msList);
  const s: Sample = {
    ms,
    minMs: Math.min(...msList),
    maxMs: Math.max(...msList),
    repeats: msList.length,
    gflops: flops / (ms * 1e6),
    source,
    backend,
  };
  if (wall?.length) {
    s.wallMs = median(wall);
    s.wallGflops = flops / (s.wallMs * 1e6);
  }
  return s;
}

// ---- results --------------------------------------------------------------------------------------

/** Implementation ids in table order. 'ours' is the variant chooseMatmulVariant picks for the shape. */
export const IMPLS = ['ours', 'ours:register', 'ours:tiled', 'ours:naive', 'ort', 'tfjs'] as const;
export type ImplId = (typeof IMPLS)[number];

export interface MatmulResult extends MatmulCase {
  flops: number;
  chosen?: string;
  impls: Partial<Record<ImplId, Sample>>;
  /** ours / peer, GFLOP/s over GFLOP/s (> 1 means ours is faster). */
  ratios: Partial<Record<'ort' | 'tfjs' | 'naive' | 'bestPeer', number>>;
}

export interface AttentionResult extends AttentionCase {
  fwdFlops: number;
  bwdFlops: number;
  fwd?: Sample;
  bwd?: Sample;
  /** Forward + backward timed as one window. */
  total?: Sample;
  /** Largest single buffer the pool handed out during forward + backward (bytes, pool bucket sizes). */
  largestBuffer?: number;
  /** Peak live bytes above what was live before the forward (inputs excluded). */
  peakExtraBytes?: number;
  /** Bytes one T×T float32 score matrix for all heads would need, for comparison. */
  scoreMatrixBytes: number;
  skipped?: string;
  /** Set when only the (cold, untimed-by-timestamps) memory run fitted the budget: its wall time in ms. */
  memoryOnlyMs?: number;
}

export interface AdapterInfoLite {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isSoftware: boolean;
  runtime: string;
  timestampQuery: boolean;
}

export interface EnvResult {
  env: 'browser' | 'node';
  adapter: AdapterInfoLite;
  /** Free text: user agent (browser) or Node/Dawn version. */
  runtime: string;
  ourTimingSource: string;
  peers: Record<string, { backend: string; timing: string; version: string; note?: string }>;
  budget: Budget;
  matmul: MatmulResult[];
  attention: AttentionResult[];
  skipped: Skip[];
  elapsedS: number;
  errors: string[];
}

export function ratioOf(a?: number, b?: number): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
}

/** Fills `ratios` from the samples: each ratio uses the same timing kind on both sides where possible. */
export function computeRatios(r: MatmulResult): void {
  const ours = r.impls.ours;
  if (!ours) return;
  const naive = r.impls['ours:naive'];
  const ratios: MatmulResult['ratios'] = {};
  ratios.naive = ratioOf(ours.gflops, naive?.gflops);
  const ort = r.impls.ort;
  // ORT is timed by wall clock only: compare against our wall-clock figure for the same runs.
  if (ort) ratios.ort = ratioOf(ours.wallGflops ?? ours.gflops, ort.gflops);
  const tfjs = r.impls.tfjs;
  if (tfjs)
    ratios.tfjs = ratioOf(tfjs.source.includes('wall') ? (ours.wallGflops ?? ours.gflops) : ours.gflops, tfjs.gflops);
  const peers = [ratios.ort, ratios.tfjs].filter((x): x is number => x !== undefined);
  if (peers.length) ratios.bestPeer = Math.min(...peers);
  r.ratios = ratios;
}
