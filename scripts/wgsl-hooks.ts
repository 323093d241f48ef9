/**
 * Node module hooks so TypeScript files can `import code from '…/x.wgsl?raw'` outside Vite, exactly as the
 * browser build does (Vite inlines `?raw` imports). Registered by scripts/register.ts.
 */
import { readFile } from 'node:fs/promises';

interface LoadResult {
  format: string;
  source: string;
  shortCircuit: boolean;
}
type NextLoad = (url: string, context: unknown) => Promise<unknown>;

export async function load(url: string, context: unknown, nextLoad: NextLoad): Promise<unknown> {
  const u = new URL(url);
  if (u.protocol === 'file:' && u.pathname.endsWith('.wgsl')) {
    const text = await readFile(u, 'utf8');
    const result: LoadResult = {
      format: 'module',
      source: `export default ${JSON.stringify(text)};`,
      shortCircuit: true,
    };
    return result;
  }
  return nextLoad(url, context);
}
