/**
 * Compiles each (shader, entry point, override constants) once. Override constants let one WGSL file serve
 * several tile sizes and transpose variants without string templating.
 */
export type Constants = Record<string, number>;

export class PipelineCache {
  /** Shader source → (module, small id used in pipeline keys). */
  private readonly modules = new Map<string, { module: GPUShaderModule; id: number }>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  compiled = 0;

  private readonly device: GPUDevice;
  constructor(device: GPUDevice) {
    this.device = device;
  }

  get(code: string, entryPoint: string, constants: Constants = {}, label = entryPoint): GPUComputePipeline {
    let mod = this.modules.get(code);
    if (!mod) {
      mod = { module: this.device.createShaderModule({ code, label }), id: this.modules.size };
      this.modules.set(code, mod);
    }
    const consts = Object.keys(constants)
      .sort()
      .map((k) => `${k}=${constants[k]}`)
      .join(',');
    const key = `${mod.id}|${entryPoint}|${consts}`;
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      pipeline = this.device.createComputePipeline({
        label: `${label}:${entryPoint}`,
        layout: 'auto',
        compute: { module: mod.module, entryPoint, constants },
      });
      this.pipelines.set(key, pipeline);
      this.compiled++;
    }
    return pipeline;
  }
}
