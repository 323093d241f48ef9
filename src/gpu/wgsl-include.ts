/**
 * `#include "lib/x.wgsl"` for WGSL, which has no include of its own. One resolver for every loader: the Vite
 * plugin (vite.config.ts, also used by vitest) and the Node hooks (scripts/wgsl-hooks.ts) each hand it a
 * `read` function, so this module stays free of Node-only imports.
 *
 * Rules: a directive is a line of its own; paths are relative to the shaders/ folder (not to the including
 * file), so one name means one file everywhere; every file is expanded once per shader (a second include of
 * it is dropped, so two libraries may both include a third); a file that includes itself, directly or through
 * others, is an error naming the chain, as is a file that cannot be read.
 */
import { TesseraError } from '../errors.ts';

/** A cycle, a file that cannot be read, or a malformed directive; the message says where. */
export class WgslIncludeError extends TesseraError {
  constructor(message: string) {
    super('wgsl-include', message);
  }
}

/** Reads a file by its path relative to shaders/; throws (or returns undefined) when it does not exist. */
export type WgslRead = (path: string) => string | undefined;

export interface WgslExpanded {
  code: string;
  /** Every included file, by path relative to shaders/, in first-include order (for watchers). */
  includes: string[];
}

const DIRECTIVE = /^[ \t]*#include[ \t]+"([^"]+)"[ \t]*(?:\/\/.*)?$/;

/** `a/./b/../c.wgsl` → `a/c.wgsl`; refuses absolute paths and paths that leave shaders/. */
export function normalizeWgslPath(path: string, from: string): string {
  if (path.startsWith('/') || /^[a-zA-Z]:/.test(path))
    throw new WgslIncludeError(`${from}: #include "${path}" must be relative to shaders/`);
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) throw new WgslIncludeError(`${from}: #include "${path}" leaves shaders/`);
      parts.pop();
    } else parts.push(p);
  }
  return parts.join('/');
}

/**
 * Expands the includes of `source`, the text of shader `entry` (its path relative to shaders/, used for the
 * cycle check and in messages).
 */
export function expandWgsl(entry: string, source: string, read: WgslRead): WgslExpanded {
  const done = new Set<string>([entry]);
  const includes: string[] = [];

  const expand = (name: string, text: string, stack: string[]): string => {
    const lines = text.split('\n');
    return lines
      .map((line, i) => {
        const m = DIRECTIVE.exec(line);
        if (!m) {
          if (/^[ \t]*#include\b/.test(line))
            throw new WgslIncludeError(
              `${name}:${i + 1}: malformed include, want #include "path.wgsl": ${line.trim()}`,
            );
          return line;
        }
        const path = normalizeWgslPath(m[1], `${name}:${i + 1}`);
        if (stack.includes(path))
          throw new WgslIncludeError(`include cycle: ${[...stack, path].join(' → ')} (at ${name}:${i + 1})`);
        if (done.has(path)) return `// (${path}: included above)`;
        let body: string | undefined;
        try {
          body = read(path);
        } catch (e) {
          throw new WgslIncludeError(`${name}:${i + 1}: cannot read included "${path}": ${(e as Error).message}`);
        }
        if (body === undefined) throw new WgslIncludeError(`${name}:${i + 1}: included "${path}" not found`);
        done.add(path);
        includes.push(path);
        return expand(path, body.replace(/\n$/, ''), [...stack, path]);
      })
      .join('\n');
  };

  return { code: expand(entry, source, [entry]), includes };
}
