import { OnnxRuntime } from '../../src/infer/stage-runtime.ts';
import { stageRuntimeCompliance } from './stage-runtime.compliance.ts';

// onnxruntime-web's wasm EP in Node (WebGPU EP in a tab). Held bytes: the K/V its sessions keep, as it counts them.
stageRuntimeCompliance(
  'onnxruntime-web (OnnxRuntime)',
  (stage, opts) => OnnxRuntime.create(stage, opts),
  (rt) => (rt as OnnxRuntime).stats().bytes,
);
