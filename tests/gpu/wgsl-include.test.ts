import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expandWgsl, WgslIncludeError } from '../../src/gpu/wgsl-include.ts';
import attentionShader from '../../shaders/attention.wgsl?raw';
import { readShader } from '../../scripts/wgsl-hooks.ts';
import { testGpu } from '../gpu-fixture.ts';

/** An in-memory shaders/ folder; counts reads so "expanded once" is seen, not assumed. */
function folder(files: Record<string, string>) {
  const reads: string[] = [];
  const read = (path: string) => {
    reads.push(path);
    return files[path];
  };
  return { read, reads };
}

describe('WGSL #include', () => {
  it('expands nested includes in place, each file once, paths relative to shaders/', () => {
    const { read, reads } = folder({
      'lib/a.wgsl': '#include "lib/c.wgsl"\nfn a() {}\n',
      'lib/b.wgsl': '#include "./lib/../lib/c.wgsl"\nfn b() {}',
      'lib/c.wgsl': 'const C = 1;\n',
    });
    const src = 'struct P { x: u32 }\n#include "lib/a.wgsl"\n  #include "lib/b.wgsl"  // both need c\nfn main() {}';
    const { code, includes } = expandWgsl('k.wgsl', src, read);
    expect(code.split('\n')).toEqual([
      'struct P { x: u32 }',
      'const C = 1;',
      'fn a() {}',
      '// (lib/c.wgsl: included above)',
      'fn b() {}',
      'fn main() {}',
    ]);
    expect(includes).toEqual(['lib/a.wgsl', 'lib/c.wgsl', 'lib/b.wgsl']);
    expect(reads).toEqual(['lib/a.wgsl', 'lib/c.wgsl', 'lib/b.wgsl']);
    expect(code.match(/const C/g)).toHaveLength(1);
  });

  it('leaves a shader without includes untouched', () => {
    const src = 'fn f() {}\n// #include "not/a/directive.wgsl" in a comment\n';
    expect(expandWgsl('k.wgsl', src, () => undefined)).toEqual({ code: src, includes: [] });
  });

  it('reports an include cycle with its chain', () => {
    const { read } = folder({ 'lib/a.wgsl': '#include "lib/b.wgsl"', 'lib/b.wgsl': 'x\n#include "lib/a.wgsl"' });
    const cycle = () => expandWgsl('k.wgsl', '#include "lib/a.wgsl"', read);
    expect(cycle).toThrow(WgslIncludeError);
    expect(cycle).toThrow('include cycle: k.wgsl → lib/a.wgsl → lib/b.wgsl → lib/a.wgsl (at lib/b.wgsl:2)');
    expect(() => expandWgsl('k.wgsl', '#include "k.wgsl"', read)).toThrow('include cycle: k.wgsl → k.wgsl');
  });

  it('reports a missing file, a failing read, a bad path and a malformed directive with where they are', () => {
    const { read } = folder({ 'lib/a.wgsl': 'fn a() {}\n#include "lib/gone.wgsl"' });
    expect(() => expandWgsl('k.wgsl', '#include "lib/a.wgsl"', read)).toThrow(
      'lib/a.wgsl:2: included "lib/gone.wgsl" not found',
    );
    const failing = () => {
      throw new Error('EACCES');
    };
    expect(() => expandWgsl('k.wgsl', '#include "x.wgsl"', failing)).toThrow(
      'k.wgsl:1: cannot read included "x.wgsl": EACCES',
    );
    expect(() => expandWgsl('k.wgsl', '\n#include "../x.wgsl"', read)).toThrow(
      'k.wgsl:2: #include "../x.wgsl" leaves shaders/',
    );
    expect(() => expandWgsl('k.wgsl', '#include "/etc/x"', read)).toThrow('must be relative to shaders/');
    expect(() => expandWgsl('k.wgsl', '#include <lib/a.wgsl>', read)).toThrow('k.wgsl:1: malformed include');
  });

  it("every shader expands, and vitest's ?raw import (the Vite plugin) gives the Node hooks' text", () => {
    const dir = new URL('../../shaders/', import.meta.url);
    const names = readdirSync(dir).filter((n) => n.endsWith('.wgsl'));
    expect(names.length).toBeGreaterThan(5);
    for (const name of names) {
      const { code } = expandWgsl(name, readFileSync(new URL(name, dir), 'utf8'), readShader);
      expect(code, name).not.toMatch(/^\s*#include/m);
    }
    const attention = expandWgsl('attention.wgsl', readFileSync(new URL('attention.wgsl', dir), 'utf8'), readShader);
    expect(attentionShader).toBe(attention.code);
  });

  it('every expanded shader parses and validates in Tint (no pipeline compiled)', async () => {
    const gpu = await testGpu();
    const dir = new URL('../../shaders/', import.meta.url);
    const errors: string[] = [];
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.wgsl'))) {
      const { code } = expandWgsl(name, readFileSync(new URL(name, dir), 'utf8'), readShader);
      const info = await gpu.device.createShaderModule({ code, label: name }).getCompilationInfo();
      for (const m of info.messages) if (m.type === 'error') errors.push(`${name}:${m.lineNum}: ${m.message}`);
    }
    expect(errors).toEqual([]);
  });
});
