/** The repository's own checks (scripts/lint.ts) find what they are meant to find, on files made up here. */
import { describe, expect, it } from 'vitest';
import { layerViolations, longLines, MAX_LINE, outsidePaths } from '../../scripts/lint.ts';

const reader = (files: Record<string, string>) => (p: string) => files[p];

describe('lint checks', () => {
  it('flags a line one character over the limit, not one at it', () => {
    const files = { 'src/a.ts': `${'x'.repeat(MAX_LINE)}\n${'y'.repeat(MAX_LINE + 1)}\n` };
    expect(longLines(['src/a.ts'], reader(files))).toEqual([
      { file: 'src/a.ts', line: 2, message: `${MAX_LINE + 1} characters (max ${MAX_LINE})` },
    ]);
  });

  it('lets imports point down the layers and refuses the ones that point up or sideways', () => {
    const files = {
      'src/model/stage.ts': "import { Gpu } from '../gpu/gpu.ts';\nimport { x } from './params.ts';\n",
      'src/gpu/gpu.ts': "import { Stage } from '../model/stage.ts';\n",
      'src/net/a.ts': "import type { R } from '../ledger/receipt.ts';\n",
      'src/app/api.ts': "export type { T } from '../coordinator/types.ts';\n",
      'src/cli/settle.ts': "import { table } from '../../bench/table.ts';\n",
      'src/ops/matmul.ts': "import code from '../../shaders/matmul.wgsl?raw';\n",
      'src/app/lazy.ts': "const m = await import('../cli/worker.ts');\n",
    };
    const found = layerViolations(Object.keys(files), reader(files)).map((p) => `${p.file}:${p.line}`);
    expect(found).toEqual([
      'src/gpu/gpu.ts:1',
      'src/net/a.ts:1',
      'src/app/api.ts:1',
      'src/cli/settle.ts:1',
      'src/app/lazy.ts:1',
    ]);
  });

  it('finds a test that reads a path outside the repository', () => {
    const files = {
      'tests/model/a.test.ts': "const ok = new URL('../fixtures/golden/x.json', import.meta.url);\n",
      // Built from parts, so this file does not itself read outside the repository in the checker's eyes.
      'tests/model/b.test.ts': `const bad = new URL('${'../'.repeat(3)}shared/golden/x.json', import.meta.url);\n`,
    };
    const found = outsidePaths(Object.keys(files), reader(files));
    expect(found.map((p) => p.file)).toEqual(['tests/model/b.test.ts']);
  });
});
