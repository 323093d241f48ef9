import { describe, expect, it } from 'vitest';
import { escapeXml, lineChartSvg, niceTicks } from '../../src/train/chart.ts';
import { formatBytes, formatDuration, ProgressBar, renderLine, statusText } from '../../src/train/progress.ts';

describe('SVG line chart', () => {
  it('picks round ticks covering the range', () => {
    expect(niceTicks(0, 300, 6)).toEqual([0, 50, 100, 150, 200, 250, 300]);
    expect(niceTicks(3.37, 6.97, 6)).toEqual([3.5, 4, 4.5, 5, 5.5, 6, 6.5]);
    expect(niceTicks(5, 5).length).toBeGreaterThan(1);
    expect(niceTicks(NaN, 1)).toEqual([]);
  });

  it('draws each series, breaks lines at non-finite points, adds reference lines and a legend', () => {
    const svg = lineChartSvg({
      title: 'loss <&> "test"',
      xLabel: 'step',
      yLabel: 'nats',
      series: [
        {
          name: 'train',
          color: '#123456',
          points: [
            [1, 7],
            [2, 6.5],
            [3, NaN],
            [4, 6],
            [5, 5.8],
          ],
        },
        {
          name: 'val',
          color: '#abcdef',
          markers: true,
          points: [
            [0, 7],
            [5, 6],
          ],
        },
      ],
      hlines: [{ y: 6.03, label: 'unigram', color: '#00ff00' }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('loss &lt;&amp;&gt; &quot;test&quot;');
    expect(svg).not.toMatch(/NaN|Infinity|undefined/);
    // train: two runs (split at the NaN); val: one run plus two markers.
    expect(svg.match(/<polyline[^>]*stroke="#123456"/g)).toHaveLength(2);
    expect(svg.match(/<polyline[^>]*stroke="#abcdef"/g)).toHaveLength(1);
    expect(svg.match(/<circle/g)).toHaveLength(2);
    expect(svg).toMatch(/<line[^>]*stroke="#00ff00"[^>]*stroke-dasharray/);
    for (const label of ['train', 'val', 'unigram', 'step', 'nats']) expect(svg).toContain(`>${label}</text>`);
    // Every coordinate lies inside the 800×480 canvas.
    for (const m of svg.matchAll(/points="([^"]+)"/g)) {
      for (const pt of m[1].split(' ')) {
        const [x, y] = pt.split(',').map(Number);
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(800);
        expect(y).toBeGreaterThanOrEqual(0);
        expect(y).toBeLessThanOrEqual(480);
      }
    }
  });

  it('handles empty and single-point data', () => {
    expect(lineChartSvg({ series: [] })).toContain('</svg>');
    const one = lineChartSvg({ series: [{ name: 'a', color: 'red', points: [[0, 1]] }] });
    expect(one).not.toMatch(/NaN|Infinity/);
    expect(one).not.toContain('<polyline');
  });

  it('escapes XML', () => {
    expect(escapeXml(`a<b>&"c"`)).toBe('a&lt;b&gt;&amp;&quot;c&quot;');
  });
});

describe('progress bar', () => {
  const base = {
    step: 50,
    total: 200,
    loss: 5.4321,
    valLoss: 5.6,
    valBpb: 3.05,
    tokensPerSecond: 812.4,
    bytes: 12_345_678,
    elapsed: 60,
  };

  it('formats the status fields', () => {
    expect(statusText(base)).toBe('loss 5.432  val 5.600 (3.050 bpb)  812 tok/s  12.3 MB sent  ETA 3m00s');
    expect(statusText({ ...base, step: 200 })).toMatch(/done in 1m00s$/);
    expect(statusText({ step: 0, total: 10, elapsed: 0 })).toBe('ETA –');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1_500_000_000)).toBe('1.5 GB');
    expect(formatDuration(3725)).toBe('1h02m');
    expect(formatDuration(42)).toBe('42s');
  });

  it('fits the line to the terminal width', () => {
    const wide = renderLine(base, 160);
    expect(wide).toMatch(/^\[█+░+\] {2}50\/200 {2}loss/);
    expect(wide.length).toBeLessThanOrEqual(160);
    const narrow = renderLine(base, 40);
    expect(narrow.length).toBeLessThanOrEqual(40);
    expect(narrow).not.toContain('[');
  });

  it('redraws in place on a TTY and prints plain lines otherwise', () => {
    const tty: string[] = [];
    const bar = new ProgressBar({ out: { write: (s) => tty.push(s) > 0, isTTY: true, columns: 120 } });
    bar.update(base);
    bar.log('eval done');
    bar.done();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's escape sequence is what is tested
    expect(tty[0]).toMatch(/^\r\x1b\[2K\[/);
    expect(tty).toContain('eval done\n');
    expect(tty.at(-1)).toBe('\n');

    const plain: string[] = [];
    const log = new ProgressBar({ out: { write: (s) => plain.push(s) > 0, isTTY: false }, plainEvery: 10 });
    for (let step = 1; step <= 25; step++) log.update({ ...base, step, total: 25 });
    expect(plain.map((l) => l.split('  ')[0])).toEqual(['step 1/25', 'step 11/25', 'step 21/25', 'step 25/25']);
    expect(plain.every((l) => !l.includes('\x1b') && l.endsWith('\n'))).toBe(true);
  });
});
