import { WgslRuntime } from '../../src/infer/stage-runtime.ts';
import { stageRuntimeCompliance } from './stage-runtime.compliance.ts';

// Held bytes: the GPU buffer pool's live bytes, so a KV tensor not given back shows, whatever the bookkeeping says.
stageRuntimeCompliance(
  'WGSL (StageInference)',
  async (stage, opts) => new WgslRuntime(stage, opts),
  (_, stage) => stage.gpu.pool.stats.liveBytes,
);
