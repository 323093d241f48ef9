/**
 * Validation loss, computed by the coordinator through the stage holders (forward only): every `everySteps`
 * model steps, and not more often than every `minIntervalMs`, the same held-out sequences of the corpus's
 * 'val' split (documents the workers never train on; src/data/corpus.ts) go to the injected `evaluate`, and its
 * mean cross-entropy is recorded as the step's 'val' metric. The same sequences every time make the curve
 * comparable across steps. Quietly skipped when no evaluate function is set, the pipeline has a stage without
 * holder, or the model's vocabulary has no shipped corpus; a failure is logged and never stops anything.
 */
import { isHttpError } from './errors.ts';
import type { Store } from './store.ts';
import type { Logger, ModelRecord } from './types.ts';

/**
 * Mean cross-entropy (nats/token) of the model's current weights on `ids` → `targets`, both row-major
 * [sequences, context] (row r predicts targets[r·context + j] from ids[r·context .. r·context + j]).
 */
export type EvaluateFn = (
  modelId: string,
  ids: Int32Array,
  targets: Int32Array,
  signal: AbortSignal,
) => Promise<number>;

export interface EvaluationOptions {
  /** Evaluate every this many model steps (default 10). */
  everySteps?: number;
  /** …and not more often than this (default 20 s). */
  minIntervalMs?: number;
  /** Held-out sequences per evaluation (default 8). */
  sequences?: number;
  /** Give up on one evaluation after this long (default 60 s). */
  timeoutMs?: number;
}

export interface ValidationDeps {
  store: Store;
  /** The evaluate function now (null: none set yet, skip). */
  evaluate: () => EvaluateFn | null;
  /** The 'val' split of the vocabulary's corpus as little-endian Uint16 token ids (CorpusData.tokens). */
  valSplit: (vocab: number) => Promise<Uint8Array>;
  /** Records a validation loss (as POST metrics with kind 'val' does, so live streams see it). */
  record: (modelId: string, step: number, loss: number) => void;
  now: () => number;
  log: Logger;
}

/** `n` windows of context + 1 tokens spread evenly over the split: inputs and their next tokens. */
export function heldOutBatch(tokens: Uint8Array, context: number, n: number): { ids: Int32Array; targets: Int32Array } {
  const view = new DataView(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  const length = Math.floor(tokens.byteLength / 2);
  if (length < context + 1)
    throw new RangeError(`the split has ${length} tokens, fewer than one sequence of ${context + 1}`);
  const ids = new Int32Array(n * context);
  const targets = new Int32Array(n * context);
  const span = length - context - 1;
  for (let r = 0; r < n; r++) {
    const start = n === 1 ? 0 : Math.floor((r * span) / (n - 1));
    for (let j = 0; j < context; j++) {
      ids[r * context + j] = view.getUint16((start + j) * 2, true);
      targets[r * context + j] = view.getUint16((start + j + 1) * 2, true);
    }
  }
  return { ids, targets };
}

interface ModelState {
  lastStep: number;
  lastAt: number;
  running: Promise<void> | null;
  /** Why this model cannot be evaluated (logged once), e.g. no shipped corpus for its vocabulary. */
  unusable?: string;
}

export class Validation {
  private readonly d: ValidationDeps;
  private readonly everySteps: number;
  private readonly minIntervalMs: number;
  private readonly sequences: number;
  private readonly timeoutMs: number;
  private readonly models = new Map<string, ModelState>();
  private readonly stopped = new AbortController();

  constructor(deps: ValidationDeps, opts: EvaluationOptions = {}) {
    this.d = deps;
    this.everySteps = opts.everySteps ?? 10;
    this.minIntervalMs = opts.minIntervalMs ?? 20_000;
    this.sequences = opts.sequences ?? 8;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    for (const [name, v] of [
      ['everySteps', this.everySteps],
      ['sequences', this.sequences],
    ] as const) {
      if (!Number.isInteger(v) || v < 1)
        throw new RangeError(`evaluation.${name} must be a positive integer, got ${v}`);
    }
    if (!(this.minIntervalMs >= 0) || !(this.timeoutMs > 0))
      throw new RangeError('evaluation.minIntervalMs must be ≥ 0 and timeoutMs > 0');
  }

  private state(modelId: string): ModelState {
    let s = this.models.get(modelId);
    if (!s) {
      // After a restart, count from the last validation already recorded.
      const r = this.d.store.connection
        .prepare("SELECT MAX(step) AS s FROM metrics WHERE model_id = ? AND kind = 'val'")
        .get(modelId) as { s: number | null };
      this.models.set(modelId, (s = { lastStep: r.s === null ? -1 : Number(r.s), lastAt: -Infinity, running: null }));
    }
    return s;
  }

  /** A training step was recorded: evaluates now if it is due (in the background; `idle()` waits for it). */
  onTrainStep(modelId: string, step: number): void {
    if (this.stopped.signal.aborted) return;
    const evaluate = this.d.evaluate();
    if (!evaluate) return;
    const s = this.state(modelId);
    if (s.running || s.unusable || step - s.lastStep < this.everySteps || this.d.now() - s.lastAt < this.minIntervalMs)
      return;
    const model = this.d.store.getModel(modelId);
    if (!model || !this.complete(model)) return;
    s.lastStep = step;
    s.lastAt = this.d.now();
    s.running = this.run(model, step, evaluate, s).finally(() => (s.running = null));
  }

  private complete(model: ModelRecord): boolean {
    const held = new Set(this.d.store.listAssignments(model.id).map((a) => a.stage));
    return model.spec.layout.every((_, i) => held.has(i));
  }

  private async run(model: ModelRecord, step: number, evaluate: EvaluateFn, s: ModelState): Promise<void> {
    let batch: { ids: Int32Array; targets: Int32Array };
    try {
      batch = heldOutBatch(await this.d.valSplit(model.spec.model.vocab), model.spec.model.context, this.sequences);
    } catch (e) {
      // No shipped corpus for this vocabulary, or a split shorter than a sequence: that will not change.
      if (isHttpError(e, 'notFound') || e instanceof RangeError) {
        s.unusable = e.message;
        this.d.log('info', `validation of ${model.id} is off: ${s.unusable}`);
      } else
        this.d.log('warn', `validation of ${model.id}: reading the held-out split failed: ${(e as Error).message}`);
      return;
    }
    const t0 = this.d.now();
    try {
      const loss = await evaluate(
        model.id,
        batch.ids,
        batch.targets,
        AbortSignal.any([this.stopped.signal, AbortSignal.timeout(this.timeoutMs)]),
      );
      if (!Number.isFinite(loss)) throw new Error(`evaluate returned ${loss}, not a finite loss`);
      if (this.stopped.signal.aborted) return;
      this.d.record(model.id, step, loss);
      this.d.log(
        'info',
        `validation loss of ${model.id} at step ${step}: ${loss.toFixed(4)} (${this.sequences} held-out ` +
          `sequences, ${this.d.now() - t0} ms)`,
      );
    } catch (e) {
      if (this.stopped.signal.aborted) return;
      this.d.log(
        'warn',
        `validation of ${model.id} at step ${step} failed (will try again in ${this.everySteps} steps): ` +
          `${(e as Error).message}`,
      );
    }
  }

  /** Resolves when no evaluation is in flight. */
  async idle(): Promise<void> {
    await Promise.all([...this.models.values()].map((s) => s.running));
  }

  /** Aborts the evaluations in flight; later steps evaluate nothing. */
  stop(): void {
    this.stopped.abort(new Error('the coordinator is stopping'));
  }
}
