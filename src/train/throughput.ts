/**
 * How fast a peer trains: tokens/s of one reference workload, trained as one stage. The coordinator turns it
 * into FLOP/s (REFERENCE_FLOPS_PER_TOKEN) to balance stages by their cost; peers measure it once on joining.
 */
import type { Gpu } from '../gpu/index.ts';
import type { ModelConfig } from '../model/config.ts';
import { trainingFlopsPerToken } from '../model/flops.ts';
import { Rng } from '../ops/rng.ts';
import { Pipeline } from './pipeline.ts';

export const REFERENCE_CONFIG: ModelConfig = { vocab: 512, dModel: 128, heads: 4, layers: 2, context: 128 };
export const REFERENCE_FLOPS_PER_TOKEN = trainingFlopsPerToken(REFERENCE_CONFIG);

/** Tokens/s of REFERENCE_CONFIG on this device (a first, untimed step compiles the kernels). */
export async function measureThroughput(gpu: Gpu, steps = 2): Promise<number> {
  const cfg = REFERENCE_CONFIG;
  const batch = 2;
  const rng = new Rng(7);
  const micro = () => {
    const ids = new Int32Array(batch * cfg.context).map(() => rng.int(cfg.vocab));
    return { ids, targets: ids.map((x) => (x + 1) % cfg.vocab) };
  };
  const p = Pipeline.create(gpu, {
    model: cfg,
    stages: 1,
    adam: { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 },
  });
  try {
    await p.trainStep([micro()], batch, cfg.context);
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await p.trainStep([micro()], batch, cfg.context);
    return (steps * batch * cfg.context) / ((performance.now() - t0) / 1000);
  } finally {
    p.destroy();
  }
}
