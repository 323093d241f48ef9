import { Rng } from '../ops/rng.ts';
import { mlpWidth, type ModelConfig } from './config.ts';
import type { StageSpec } from './stages.ts';

/**
 * Parameter names and shapes follow tests/fixtures/golden/tiny-gpt.json (GPT-2 names, W stored [in, out]).
 * Weight decay applies to 2-D tensors only. Initialisation follows nanoGPT: N(0, 0.02), residual
 * projections N(0, 0.02/√(2·layers)), biases 0, LayerNorm gains 1. Each tensor draws from its own
 * stream seeded by (model seed, name), so a stage initialises exactly as the same tensors would in the
 * unsplit model, with no communication.
 */
export interface ParamSpec {
  name: string;
  shape: number[];
  decay: boolean;
  init: { kind: 'normal'; std: number } | { kind: 'zeros' } | { kind: 'ones' };
}

export function blockParamSpecs(cfg: ModelConfig, layer: number): ParamSpec[] {
  const C = cfg.dModel;
  const F = mlpWidth(cfg);
  const p = `h.${layer}`;
  const w = (name: string, shape: number[], std = 0.02): ParamSpec => ({
    name,
    shape,
    decay: true,
    init: { kind: 'normal', std },
  });
  const zeros = (name: string, n: number): ParamSpec => ({ name, shape: [n], decay: false, init: { kind: 'zeros' } });
  const ones = (name: string, n: number): ParamSpec => ({ name, shape: [n], decay: false, init: { kind: 'ones' } });
  const residualStd = 0.02 / Math.sqrt(2 * cfg.layers);
  return [
    ones(`${p}.ln1.w`, C),
    zeros(`${p}.ln1.b`, C),
    w(`${p}.attn.qkv.w`, [C, 3 * C]),
    zeros(`${p}.attn.qkv.b`, 3 * C),
    w(`${p}.attn.proj.w`, [C, C], residualStd),
    zeros(`${p}.attn.proj.b`, C),
    ones(`${p}.ln2.w`, C),
    zeros(`${p}.ln2.b`, C),
    w(`${p}.mlp.fc.w`, [C, F]),
    zeros(`${p}.mlp.fc.b`, F),
    w(`${p}.mlp.proj.w`, [F, C], residualStd),
    zeros(`${p}.mlp.proj.b`, C),
  ];
}

/** The parameters a stage owns, in a fixed order (embeddings, blocks, final LayerNorm, head). */
export function stageParamSpecs(cfg: ModelConfig, stage: StageSpec): ParamSpec[] {
  const C = cfg.dModel;
  const specs: ParamSpec[] = [];
  if (stage.hasEmbedding) {
    specs.push({ name: 'wte', shape: [cfg.vocab, C], decay: true, init: { kind: 'normal', std: 0.02 } });
    specs.push({ name: 'wpe', shape: [cfg.context, C], decay: true, init: { kind: 'normal', std: 0.02 } });
  }
  for (let l = stage.firstLayer; l < stage.endLayer; l++) specs.push(...blockParamSpecs(cfg, l));
  if (stage.hasHead) {
    specs.push({ name: 'lnf.w', shape: [C], decay: false, init: { kind: 'ones' } });
    specs.push({ name: 'lnf.b', shape: [C], decay: false, init: { kind: 'zeros' } });
    specs.push({ name: 'head.w', shape: [C, cfg.vocab], decay: true, init: { kind: 'normal', std: 0.02 } });
  }
  return specs;
}

function nameSeed(seed: number, name: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export function initParam(spec: ParamSpec, seed: number): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (spec.init.kind === 'ones') out.fill(1);
  else if (spec.init.kind === 'normal') {
    const rng = new Rng(nameSeed(seed, spec.name));
    for (let i = 0; i < n; i++) out[i] = rng.normal() * spec.init.std;
  }
  return out;
}
