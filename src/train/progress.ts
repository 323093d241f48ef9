/**
 * A one-line terminal progress display for training: a bar with step/total, loss, validation loss and bits per
 * byte, tokens/s, bytes on the wire and ETA, redrawn in place on a TTY. When the output is not a terminal (a
 * log file, CI), it prints plain lines instead, at most one per `plainEvery` steps plus every log line.
 */
export interface ProgressState {
  step: number;
  total: number;
  loss?: number;
  valLoss?: number;
  valBpb?: number;
  tokensPerSecond?: number;
  /** Bytes sent between stages so far. */
  bytes?: number;
  /** Seconds elapsed (for the ETA). */
  elapsed: number;
  /** Refused steps so far. */
  refused?: number;
}

export interface ProgressStream {
  write(s: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : 1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

function formatRate(n: number): string {
  return n >= 1e4 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0);
}

/** The status fields after the bar: "loss 4.12  val 4.30 (1.71 bpb)  1234 tok/s  12.0 MB  ETA 2m10s". */
export function statusText(p: ProgressState): string {
  const parts: string[] = [];
  if (p.loss !== undefined) parts.push(`loss ${Number.isFinite(p.loss) ? p.loss.toFixed(3) : p.loss}`);
  if (p.valLoss !== undefined)
    parts.push(`val ${p.valLoss.toFixed(3)}${p.valBpb !== undefined ? ` (${p.valBpb.toFixed(3)} bpb)` : ''}`);
  if (p.tokensPerSecond !== undefined) parts.push(`${formatRate(p.tokensPerSecond)} tok/s`);
  if (p.bytes !== undefined) parts.push(`${formatBytes(p.bytes)} sent`);
  if (p.refused) parts.push(`${p.refused} refused`);
  const eta = p.step > 0 && p.step < p.total ? (p.elapsed / p.step) * (p.total - p.step) : p.step >= p.total ? 0 : NaN;
  parts.push(p.step >= p.total ? `done in ${formatDuration(p.elapsed)}` : `ETA ${formatDuration(eta)}`);
  return parts.join('  ');
}

/** The whole line, fitted to `columns`: the bar takes what the text leaves (at least 10 cells, or none). */
export function renderLine(p: ProgressState, columns = 100): string {
  const total = Math.max(1, p.total);
  const counter = `${String(p.step).padStart(String(total).length)}/${total}`;
  const text = statusText(p);
  const room = columns - counter.length - text.length - 5;
  if (room < 10) return `${counter}  ${text}`.slice(0, Math.max(0, columns - 1));
  const width = Math.min(40, room);
  const done = Math.min(width, Math.floor((Math.min(p.step, total) / total) * width));
  return `[${'█'.repeat(done)}${'░'.repeat(width - done)}] ${counter}  ${text}`;
}

export class ProgressBar {
  private readonly out: ProgressStream;
  private readonly tty: boolean;
  private readonly plainEvery: number;
  private last?: ProgressState;
  private lastPlainStep = -Infinity;
  private drawn = false;

  constructor(opts: { out?: ProgressStream; tty?: boolean; plainEvery?: number } = {}) {
    this.out = opts.out ?? process.stdout;
    this.tty = opts.tty ?? Boolean(this.out.isTTY);
    this.plainEvery = opts.plainEvery ?? 10;
  }

  /** Redraws the bar (TTY) or prints a plain line every `plainEvery` steps, and always for the last step. */
  update(p: ProgressState, force = false): void {
    this.last = { ...p };
    if (this.tty) {
      this.out.write(`\r\x1b[2K${renderLine(p, this.out.columns ?? 100)}`);
      this.drawn = true;
    } else if (force || p.step >= p.total || p.step - this.lastPlainStep >= this.plainEvery) {
      this.lastPlainStep = p.step;
      this.out.write(`step ${p.step}/${p.total}  ${statusText(p)}\n`);
    }
  }

  /** Prints a line above the bar (the bar is redrawn under it). */
  log(line: string): void {
    if (this.tty && this.drawn) this.out.write('\r\x1b[2K');
    this.out.write(`${line}\n`);
    if (this.tty && this.last) this.update(this.last);
  }

  /** Leaves the final bar on its own line. */
  done(): void {
    if (this.tty && this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
