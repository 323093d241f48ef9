/** Display helpers shared by the pages. */

/** `n word` with an English plural: `1 stage`, `3 stages` (an irregular plural as `many`). */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = u === 0 || Number.isInteger(v) ? 0 : v < 10 ? 2 : 1;
  return `${v.toFixed(digits)} ${units[u]}`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatMs(ms: number): string {
  if (ms < 1) return '< 1 ms';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** Errors span 0 to ~1e-3; exponent notation keeps the column aligned and readable. */
export function formatErr(x: number): string {
  if (x === 0) return '0';
  if (!Number.isFinite(x)) return String(x);
  return x.toExponential(2);
}

export function formatValue(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? '+∞' : '−∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e5 ? x.toPrecision(7) : x.toExponential(6);
}

/** Tolerances are powers of ten or small multiples of one: 1e-6, 5e-5, 0.01. */
export function formatTol(x: number): string {
  if (x === 0 || x >= 1e-3) return String(x);
  return x.toExponential();
}

/** SI-scaled figure with a unit: 1234 → "1.23 k…", for rates and FLOP counts that span many decades. */
function si(x: number, unit: string, base: 1000 | 1024 = 1000): string {
  const prefixes = base === 1024 ? ['', 'Ki', 'Mi', 'Gi', 'Ti'] : ['', 'k', 'M', 'G', 'T', 'P', 'E', 'Z'];
  let v = Math.abs(x);
  let p = 0;
  while (v >= base && p < prefixes.length - 1) {
    v /= base;
    p++;
  }
  const digits = v >= 100 || (p === 0 && Number.isInteger(v)) ? 0 : v >= 10 ? 1 : 2;
  return `${x < 0 ? '−' : ''}${v.toFixed(digits)} ${prefixes[p]}${unit}`;
}

/** Link bandwidth: "850 B/s", "1.25 MB/s" (decimal units, as network speeds are quoted). */
export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return '—';
  return `${si(bytesPerSecond, 'B')}/s`;
}

/** FLOP counts arrive as decimal strings (they outgrow 2^53); shown rounded: "3.20 PFLOP". */
export function formatFlops(decimal: string | number | bigint): string {
  const n = typeof decimal === 'number' ? decimal : Number(decimal);
  if (!Number.isFinite(n) || n < 0) return '—';
  return si(n, 'FLOP');
}

/** A recent average credit (FLOP/s-equivalent, BOINC's RAC). */
export function formatFlopRate(x: number): string {
  if (!Number.isFinite(x) || x < 0) return '—';
  return `${si(x, 'FLOP')}/s`;
}

export function formatTokensPerSecond(x: number): string {
  if (!Number.isFinite(x)) return '—';
  return `${x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toPrecision(3)} tok/s`;
}

export function formatPercent(share: number): string {
  if (!Number.isFinite(share)) return '—';
  const p = share * 100;
  return `${p === 0 || p >= 10 ? p.toFixed(0) : p.toFixed(1)}%`;
}

/** libp2p peer ids and addresses are long: first and last characters, enough to tell peers apart. */
export function shortId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}
