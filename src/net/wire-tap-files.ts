/**
 * TESSERA_WIRE_TAP=<dir> on a Node worker: appends every byte it receives over libp2p to <dir>/<peer>.in and
 * writes the weights of the stage it holds, each time their step changes, to <dir>/<peer>.stage<s>.step<k>.f32
 * (all parameters, float32, in the stage's slot order). A test reads them back (no-weights-leak.test.ts).
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import type { Stage } from '../model/stage.ts';
import { installWireTap } from './wire-tap.ts';

export function wireTapToFiles(node: Libp2p, dir: string): (held: { stage: Stage } | null) => void {
  mkdirSync(dir, { recursive: true });
  const me = node.peerId.toString();
  installWireTap(node, (_protocol, bytes) => appendFileSync(join(dir, `${me}.in`), bytes));
  const written = new Set<string>();
  return (held) => {
    if (!held) return;
    const { stage } = held;
    const name = `${me}.stage${stage.spec.index}.step${stage.step}.f32`;
    if (written.has(name)) return;
    written.add(name);
    // Reads are queued after the update that set this step, so they see exactly its weights.
    void Promise.all([...stage.slots.values()].map((s) => stage.gpu.read(s.param) as Promise<Float32Array>))
      .then((parts) => {
        const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          all.set(p, o);
          o += p.length;
        }
        writeFileSync(join(dir, name), new Uint8Array(all.buffer));
      })
      .catch(() => written.delete(name));
  };
}
