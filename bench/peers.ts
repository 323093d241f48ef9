/**
 * The peers, browser only: onnxruntime-web (WebGPU execution provider, falling back to its wasm EP) running
 * a one-node MatMul/Gemm model built in code, and TensorFlow.js `tf.matMul` (WebGPU backend, falling back to
 * its CPU backend). Each is measured the fairest way it allows, stated in `source`.
 */
import * as ort from 'onnxruntime-web/webgpu';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu';
import type { MatmulCase } from './cases.ts';
import { buildMatmulModel, operandShapes } from './onnx-matmul.ts';
import type { Instance, Log, MatmulImpl } from './sweep.ts';

export interface PeerInfo {
  backend: string;
  timing: string;
  version: string;
  note?: string;
}

const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

async function readBuffer(device: GPUDevice, buf: GPUBuffer, bytes: number): Promise<Float32Array> {
  const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---- onnxruntime-web ------------------------------------------------------------------------------

function ortWebgpu(): MatmulImpl {
  return {
    id: 'ort',
    backend: 'webgpu',
    source: 'wall-clock: session.run with inputs and output bound as GPU buffers, then queue.onSubmittedWorkDone',
    async create(c: MatmulCase, a: Float32Array, b: Float32Array): Promise<Instance> {
      const session = await ort.InferenceSession.create(buildMatmulModel(c), {
        executionProviders: ['webgpu'],
        preferredOutputLocation: 'gpu-buffer',
        graphOptimizationLevel: 'all',
      });
      const device = (await ort.env.webgpu.device) as GPUDevice;
      const shapes = operandShapes(c);
      const buffers: GPUBuffer[] = [];
      const gpuTensor = (data: Float32Array | undefined, dims: [number, number]) => {
        const buf = device.createBuffer({ size: dims[0] * dims[1] * 4, usage: STORAGE() });
        if (data) device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
        buffers.push(buf);
        return ort.Tensor.fromGpuBuffer(buf, { dataType: 'float32', dims });
      };
      const A = gpuTensor(a, shapes.a);
      const B = gpuTensor(b, shapes.b);
      // A pre-bound output buffer: no allocation inside the timed run.
      const Y = gpuTensor(undefined, [c.M, c.N]);
      await device.queue.onSubmittedWorkDone();
      return {
        async run() {
          const t0 = performance.now();
          await session.run({ A, B }, { Y });
          await device.queue.onSubmittedWorkDone();
          const ms = performance.now() - t0;
          return { ms, wallMs: ms };
        },
        output: () => readBuffer(device, buffers[2], c.M * c.N * 4),
        async dispose() {
          await session.release();
          for (const buf of buffers) buf.destroy();
        },
      };
    },
  };
}

function ortWasm(): MatmulImpl {
  return {
    id: 'ort',
    backend: 'wasm',
    source: `wall-clock around session.run (wasm EP, ${ort.env.wasm.numThreads ?? 'default'} thread(s), CPU tensors)`,
    async create(c: MatmulCase, a: Float32Array, b: Float32Array): Promise<Instance> {
      const session = await ort.InferenceSession.create(buildMatmulModel(c), {
        executionProviders: ['wasm'],
        graphOptimizationLevel: 'all',
      });
      const shapes = operandShapes(c);
      const A = new ort.Tensor('float32', a, shapes.a);
      const B = new ort.Tensor('float32', b, shapes.b);
      let Y: Float32Array | undefined;
      return {
        async run() {
          const t0 = performance.now();
          const out = await session.run({ A, B });
          const ms = performance.now() - t0;
          Y = out.Y.data as Float32Array;
          return { ms, wallMs: ms };
        },
        output: async () => Y ?? new Float32Array(),
        dispose: () => session.release(),
      };
    },
  };
}

/** onnxruntime-web on WebGPU if a tiny model runs there, else its wasm EP (said so in the info). */
export async function ortImpl(log: Log): Promise<{ impl: MatmulImpl; info: PeerInfo }> {
  const version = `onnxruntime-web ${ort.env.versions.web ?? '?'}`;
  ort.env.logLevel = 'error';
  try {
    const probe = ortWebgpu();
    const inst = await probe.create(
      { id: 'probe', group: 'square', tier: 1, label: 'probe', M: 8, N: 8, K: 8, transA: false, transB: false },
      new Float32Array(64).fill(1),
      new Float32Array(64).fill(1),
    );
    await inst.run();
    const y = await inst.output!();
    await inst.dispose();
    if (y[0] !== 8) throw new Error(`probe MatMul gave ${y[0]} instead of 8`);
    const device = (await ort.env.webgpu.device) as GPUDevice;
    const ts = device.features.has('timestamp-query')
      ? 'its device has timestamp-query, but the native EP exposes it only through session profiling files, so'
      : 'no timestamp-query on its device, so';
    return {
      impl: probe,
      info: { backend: 'webgpu', timing: probe.source, version, note: `${ts} timed by wall clock` },
    };
  } catch (e) {
    log(`onnxruntime-web WebGPU EP unavailable on this adapter (${errText(e)}); falling back to its wasm EP`);
    const impl = ortWasm();
    return { impl, info: { backend: 'wasm', timing: impl.source, version, note: `WebGPU EP failed: ${errText(e)}` } };
  }
}

// ---- TensorFlow.js -----------------------------------------------------------------------------------

function tfjsImpl(backend: string): MatmulImpl {
  const gpu = backend === 'webgpu';
  return {
    id: 'tfjs',
    backend,
    source: gpu
      ? 'tf.time() kernelMs: GPU timestamp queries around each tfjs program (wall = until tf.time resolves)'
      : `wall-clock around tf.matMul + dataSync (${backend} backend)`,
    async create(c: MatmulCase, a: Float32Array, b: Float32Array): Promise<Instance> {
      const shapes = operandShapes(c);
      const A = tf.tensor2d(a, shapes.a);
      const B = tf.tensor2d(b, shapes.b);
      let Y: tf.Tensor | undefined;
      return {
        async run() {
          Y?.dispose();
          if (gpu) {
            const t0 = performance.now();
            const info = await tf.time(() => {
              Y = tf.matMul(A, B, c.transA, c.transB);
            });
            return { ms: info.kernelMs as number, wallMs: performance.now() - t0 };
          }
          const t0 = performance.now();
          Y = tf.matMul(A, B, c.transA, c.transB);
          Y.dataSync();
          const ms = performance.now() - t0;
          return { ms, wallMs: ms };
        },
        output: async () => (Y ? ((await Y.data()) as Float32Array) : new Float32Array()),
        dispose: () => {
          tf.dispose([A, B]);
          Y?.dispose();
        },
      };
    },
  };
}

/** TensorFlow.js on its WebGPU backend when it initialises here, else its CPU backend (said so). */
export async function tfjsPeer(log: Log): Promise<{ impl: MatmulImpl; info: PeerInfo }> {
  const version = `@tensorflow/tfjs-core ${tf.version_core} + tfjs-backend-webgpu`;
  let note: string | undefined;
  try {
    if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") returned false');
    await tf.ready();
    const probe = tf.matMul(tf.ones([8, 8]), tf.ones([8, 8]));
    const v = (await probe.data())[0];
    probe.dispose();
    if (v !== 8) throw new Error(`probe matMul gave ${v}`);
    const hasTs = (tf.backend() as unknown as { supportTimestampQuery?: boolean }).supportTimestampQuery;
    const impl = tfjsImpl('webgpu');
    if (!hasTs) {
      note = 'tfjs device lacks timestamp-query: kernelMs would be 0, so timed by wall clock';
      impl.source = 'wall-clock until tf.time resolves (no timestamp-query)';
      const run = impl.create.bind(impl);
      impl.create = async (c, a, b) => {
        const inst = await run(c, a, b);
        return {
          ...inst,
          run: async () => {
            const r = await inst.run();
            return { ms: r.wallMs!, wallMs: r.wallMs };
          },
        };
      };
    }
    return { impl, info: { backend: 'webgpu', timing: impl.source, version, note } };
  } catch (e) {
    log(`TensorFlow.js WebGPU backend unavailable (${errText(e)}); falling back to its CPU backend`);
    await import('@tensorflow/tfjs-backend-cpu');
    await tf.setBackend('cpu');
    const impl = tfjsImpl('cpu');
    return {
      impl,
      info: {
        backend: 'cpu',
        timing: impl.source,
        version,
        note: `WebGPU backend failed: ${errText(e)}; tfjs-backend-wasm is not installed`,
      },
    };
  }
}
