/** A Markdown table that also reads well in a terminal: columns padded, right-aligned unless marked 'l'. */
export function table(headers: string[], rows: string[][], align?: Array<'l' | 'r'>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const pad = (s: string, i: number) => ((align?.[i] ?? 'r') === 'l' ? s.padEnd(widths[i]) : s.padStart(widths[i]));
  const line = (cells: string[]) => `| ${cells.map(pad).join(' | ')} |`;
  // Markdown alignment: ':' at the right end of a rule marks a right-aligned column.
  const dashes = (w: number, i: number) =>
    (align?.[i] ?? 'r') === 'l' ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `;
  const rule = `|${widths.map(dashes).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}
