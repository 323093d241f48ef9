/**
 * Where a worker's stage comes from when it does not hold it: the seeded initialisation (no peer holds any of
 * the model), or a holder's checkpoint over `/tessera/stage/1.0.0`, verified before anything reaches the GPU.
 */
import type { Libp2p } from 'libp2p';
import type { Gpu } from '../../gpu/index.ts';
import { readCheckpoint, type StageCheckpoint } from '../../model/checkpoint.ts';
import type { ModelConfig } from '../../model/config.ts';
import { sha256Hex } from '../../model/safetensors.ts';
import { Stage } from '../../model/stage.ts';
import type { StageSpec } from '../../model/stages.ts';
import { recipeBoundaries } from '../../train/recipe.ts';
import type { RunSpec } from '../../train/run-spec.ts';
import type { Assignment } from '../coordinator-client.ts';
import { HeldStage } from '../held-stage.ts';
import { Reconfigure, short, sleep } from '../rendezvous.ts';
import { fetchStage } from '../stage-transfer.ts';

/** The stage as the model's seeds initialise it (every peer seeding it gets the same weights). */
export function seeded(gpu: Gpu, run: RunSpec, spec: StageSpec, step: number): HeldStage {
  const stage = Stage.create(gpu, run.model, spec);
  recipeBoundaries(gpu, run).init(stage);
  return new HeldStage(stage, step);
}

/** A stage rebuilt from a checkpoint that readCheckpoint already verified. */
function stageFrom(gpu: Gpu, cfg: ModelConfig, ck: StageCheckpoint): Stage {
  const stage = Stage.create(gpu, cfg, ck.spec, ck.params);
  for (const [name, slot] of stage.slots) {
    gpu.write(slot.m, ck.m.get(name)!);
    gpu.write(slot.v, ck.v.get(name)!);
  }
  stage.step = ck.step;
  return stage;
}

/** The stage from this peer's own snapshot at `step`, checked like a fetched checkpoint before it reaches the GPU. */
export async function fromSnapshot(
  d: { gpu: Gpu; log: (line: string) => void },
  a: Assignment,
  spec: StageSpec,
  step: number,
  bytes: Uint8Array,
): Promise<HeldStage> {
  const ck = await readCheckpoint(bytes, { cfg: a.spec.model, spec });
  const held = new HeldStage(stageFrom(d.gpu, a.spec.model, ck), step);
  d.log(`resumed stage ${a.stage} of ${a.modelId} from its snapshot at step ${step} (${bytes.length} bytes)`);
  return held;
}

/** The stage's checkpoint at `step` from one of `sources` (tried in turn, for up to 120 s), on this GPU. */
export async function fetchHeld(
  d: { gpu: Gpu; node: Libp2p; log: (line: string) => void },
  a: Assignment,
  spec: StageSpec,
  step: number,
  sources: string[],
  signal: AbortSignal,
): Promise<HeldStage> {
  if (!sources.length) throw new Error(`no peer of the pipeline holds stage ${a.stage} to fetch it from`);
  const deadline = Date.now() + 120_000;
  for (;;) {
    for (const peer of sources) {
      try {
        const got = await fetchStage(
          d.node,
          peer,
          { model: a.modelId, stage: a.stage, step },
          { cfg: a.spec.model, spec },
          { signal, timeoutMs: 60_000 },
        );
        const held = new HeldStage(stageFrom(d.gpu, a.spec.model, got.checkpoint), step);
        // Serialising what landed on this GPU gives the holder's file back byte for byte if nothing was lost on the
        // way.
        const resaved = await sha256Hex(await held.checkpoint());
        d.log(
          `loaded stage ${a.stage} at step ${step} from ${short(peer)}: ${got.bytes.length} bytes, sha256 ` +
            `${got.sha256}; re-saved here sha256 ${resaved}${resaved === got.sha256 ? '' : ' (DIFFERS)'}`,
        );
        return held;
      } catch (e) {
        if (signal.aborted) throw new Reconfigure(String(signal.reason?.message ?? signal.reason));
        d.log(`stage ${a.stage} from ${short(peer)}: ${(e as Error).message}`);
      }
    }
    if (Date.now() > deadline) throw new Error(`no holder served stage ${a.stage} at step ${step} within 120 s`);
    await sleep(300, signal);
  }
}
