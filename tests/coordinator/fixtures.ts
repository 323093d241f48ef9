import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { specFromFlat } from '../../src/coordinator/registry.ts';
import type { Logger, ModelRecord } from '../../src/coordinator/types.ts';

/** A temporary directory for database files, removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-coord-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const tinyConfig = { vocab: 32, dModel: 16, heads: 2, layers: 4, context: 8 };

export function tinyModel(id: string, layout = [1, 1, 1, 1], at = 1000): ModelRecord {
  const config = { ...tinyConfig };
  const spec = specFromFlat({ config, layout, codec: 'none', microBatches: 4, batch: 2, pricePer1kTokens: 0.5 });
  return { id, name: `model ${id}`, spec, createdAt: at };
}

/** A logger that keeps lines for assertions instead of printing them. */
export function memoryLog(): { log: Logger; lines: Array<{ level: string; message: string }> } {
  const lines: Array<{ level: string; message: string }> = [];
  return { log: (level, message) => void lines.push({ level, message }), lines };
}
