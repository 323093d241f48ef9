/**
 * A small SVG line-chart writer for loss curves: axes with round tick values, one polyline per series (gaps at
 * non-finite points), horizontal reference lines (e.g. the unigram baseline) and a legend. Pure string output,
 * no DOM and no dependencies, so it runs in Node and in the browser alike.
 */
export interface Series {
  name: string;
  /** [x, y] points; non-finite y breaks the line. */
  points: ReadonlyArray<readonly [number, number]>;
  color: string;
  /** Draw a marker at each point (for sparse series such as periodic validation). */
  markers?: boolean;
  dash?: string;
}

export interface ReferenceLine {
  y: number;
  label: string;
  color: string;
}

export interface ChartOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  series: Series[];
  hlines?: ReferenceLine[];
  width?: number;
  height?: number;
  /** Force the y range (default: all finite data and reference lines, padded). */
  yMin?: number;
  yMax?: number;
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round tick values within [lo, hi]: steps of 1, 2 or 5 × 10^k, about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  // The 1-2-5 step whose tick count comes closest to the target.
  const count = (s: number) => Math.floor(hi / s + 1e-9) - Math.ceil(lo / s - 1e-9) + 1;
  const step = [1, 2, 5, 10]
    .map((m) => m * mag)
    .reduce((best, s) => (Math.abs(count(s) - target) < Math.abs(count(best) - target) ? s : best));
  const first = Math.ceil(lo / step - 1e-9);
  const last = Math.floor(hi / step + 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** Renders the chart as a standalone SVG document. */
export function lineChartSvg(opts: ChartOptions): string {
  const W = opts.width ?? 800;
  const H = opts.height ?? 480;
  const m = { left: 64, right: 24, top: opts.title ? 40 : 16, bottom: 52 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const hlines = (opts.hlines ?? []).filter((h) => Number.isFinite(h.y));
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of opts.series) {
    for (const [x, y] of s.points) {
      if (Number.isFinite(x) && Number.isFinite(y)) {
        xs.push(x);
        ys.push(y);
      }
    }
  }
  for (const h of hlines) ys.push(h.y);
  const x0 = xs.length ? Math.min(...xs) : 0;
  let x1 = xs.length ? Math.max(...xs) : 1;
  if (x1 === x0) x1 = x0 + 1;
  let y0 = opts.yMin ?? (ys.length ? Math.min(...ys) : 0);
  let y1 = opts.yMax ?? (ys.length ? Math.max(...ys) : 1);
  if (y1 === y0) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const yPad = (y1 - y0) * 0.05;
  if (opts.yMin === undefined) y0 -= yPad;
  if (opts.yMax === undefined) y1 += yPad;
  const xt = niceTicks(x0, x1, 8).filter((t) => t >= x0 && t <= x1);
  const yt = niceTicks(y0, y1, 6).filter((t) => t >= y0 && t <= y1);
  const px = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
  const py = (y: number) => m.top + (1 - (y - y0) / (y1 - y0)) * ph;
  const n = (v: number) => v.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  if (opts.title)
    out.push(
      `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" ` +
        `font-weight="bold">${escapeXml(opts.title)}</text>`,
    );
  out.push(
    `<defs><clipPath id="plot"><rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}"/></clipPath></defs>`,
  );
  for (const t of yt) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${n(py(t))}" y2="${n(py(t))}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${n(py(t) + 4)}" text-anchor="end" fill="#333">${fmt(t)}</text>`);
  }
  for (const t of xt) {
    out.push(`<line x1="${n(px(t))}" x2="${n(px(t))}" y1="${m.top}" y2="${m.top + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${n(px(t))}" y="${m.top + ph + 16}" text-anchor="middle" fill="#333">${fmt(t)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  if (opts.xLabel)
    out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`);
  if (opts.yLabel)
    out.push(
      `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" ` +
        `text-anchor="middle">${escapeXml(opts.yLabel)}</text>`,
    );
  out.push('<g clip-path="url(#plot)">');
  for (const h of hlines) {
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${n(py(h.y))}" y2="${n(py(h.y))}" ` +
        `stroke="${escapeXml(h.color)}" stroke-width="1.5" stroke-dasharray="6 4"/>`,
    );
  }
  for (const s of opts.series) {
    const color = escapeXml(s.color);
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1)
        out.push(
          `<polyline fill="none" stroke="${color}" ` +
            `stroke-width="1.6"${s.dash ? ` stroke-dasharray="${escapeXml(s.dash)}"` : ''} points="${run.join(' ')}"/>`,
        );
      run = [];
    };
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        flush();
        continue;
      }
      run.push(`${n(px(x))},${n(py(y))}`);
      if (s.markers) out.push(`<circle cx="${n(px(x))}" cy="${n(py(y))}" r="3" fill="${color}"/>`);
    }
    flush();
  }
  out.push('</g>');
  // Legend, top right inside the plot.
  const items = [
    ...opts.series.map((s) => ({ label: s.name, color: s.color, dash: s.dash })),
    ...hlines.map((h) => ({ label: h.label, color: h.color, dash: '6 4' })),
  ];
  if (items.length) {
    const lw = Math.max(...items.map((i) => i.label.length)) * 6.6 + 40;
    const lx = m.left + pw - lw - 8;
    const ly = m.top + 8;
    out.push(
      `<rect x="${n(lx)}" y="${ly}" width="${n(lw)}" height="${items.length * 18 + 8}" fill="#ffffff" ` +
        `fill-opacity="0.85" stroke="#ccc"/>`,
    );
    items.forEach((it, i) => {
      const y = ly + 16 + i * 18;
      out.push(
        `<line x1="${n(lx + 8)}" x2="${n(lx + 30)}" y1="${y - 4}" y2="${y - 4}" ` +
          `stroke="${escapeXml(it.color)}" ` +
          `stroke-width="2"${it.dash ? ` stroke-dasharray="${escapeXml(it.dash)}"` : ''}/>`,
      );
      out.push(`<text x="${n(lx + 36)}" y="${y}">${escapeXml(it.label)}</text>`);
    });
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
