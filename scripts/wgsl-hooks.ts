/**
 * Node module hooks so TypeScript files can `import code from '…/x.wgsl?raw'` outside Vite, exactly as the
 * browser build does (Vite inlines `?raw` imports, after the `#include` expansion of src/gpu/wgsl-include.ts,
 * as these hooks do). Registered by scripts/register.ts.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expandWgsl, type WgslRead } from '../src/gpu/wgsl-include.ts';

interface LoadResult {
  format: string;
  source: string;
  shortCircuit: boolean;
}
type NextLoad = (url: string, context: unknown) => Promise<unknown>;

/** Includes resolve against shaders/ at the repository root (this file's sibling folder). */
const SHADERS = new URL('../shaders/', import.meta.url);

export const readShader: WgslRead = (path) => {
  try {
    return readFileSync(new URL(path, SHADERS), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
};

export async function load(url: string, context: unknown, nextLoad: NextLoad): Promise<unknown> {
  const u = new URL(url);
  if (u.protocol === 'file:' && u.pathname.endsWith('.wgsl')) {
    const text = readFileSync(u, 'utf8');
    const entry = u.href.startsWith(SHADERS.href) ? u.href.slice(SHADERS.href.length) : fileURLToPath(u);
    const result: LoadResult = {
      format: 'module',
      source: `export default ${JSON.stringify(expandWgsl(decodeURIComponent(entry), text, readShader).code)};`,
      shortCircuit: true,
    };
    return result;
  }
  return nextLoad(url, context);
}
