import { WebGpuUnavailableError } from './errors.ts';

/** Where a GPU comes from: the browser's navigator.gpu, or Dawn (npm `webgpu`) in Node. */
export interface GpuSource {
  gpu: GPU;
  runtime: 'browser' | 'dawn';
}

const BROWSER_ADVICE =
  'Use a browser with WebGPU: Chrome or Edge 113+ (desktop), Chrome 121+ on Android, Safari 26+, or Firefox ' +
  '141+ on Windows. ' +
  'On Linux Chrome, enable chrome://flags/#enable-unsafe-webgpu and chrome://flags/#enable-vulkan, then ' +
  'restart the browser. ' +
  'The page must be served over https or from 127.0.0.1/localhost.';

const NODE_ADVICE =
  'Install a Vulkan loader and driver (Debian: apt-get install libvulkan1 and mesa-vulkan-drivers from ' +
  'bookworm-backports), ' +
  'or run `npm start`, which installs them. Set VK_ICD_FILENAMES to choose a driver.';

/** Default CPU Vulkan driver for Node when none is chosen: lavapipe is ~10x faster than SwiftShader here. */
const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';

let dawn: GPU | undefined;

export async function acquireGpuSource(): Promise<GpuSource> {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  const isBrowser = typeof window !== 'undefined' && typeof document !== 'undefined';
  if (isBrowser) {
    if (!nav?.gpu) {
      const why =
        globalThis.isSecureContext === false
          ? 'this page is not a secure context'
          : 'this browser does not expose navigator.gpu';
      throw new WebGpuUnavailableError(`WebGPU is not available: ${why}.`, BROWSER_ADVICE);
    }
    return { gpu: nav.gpu, runtime: 'browser' };
  }
  if (!dawn) {
    const { existsSync } = await import(/* @vite-ignore */ 'node:fs');
    if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(LAVAPIPE_ICD)) {
      process.env.VK_ICD_FILENAMES = LAVAPIPE_ICD;
    }
    let mod: { create(flags: string[]): GPU; globals: object };
    try {
      const name = 'webgpu';
      mod = await import(/* @vite-ignore */ name);
    } catch (e) {
      throw new WebGpuUnavailableError(
        `The npm package "webgpu" (Dawn) could not be loaded: ${(e as Error).message}`,
        NODE_ADVICE,
      );
    }
    // Dawn's classes (GPUBufferUsage, ...) must be globals, as they are in a browser.
    for (const [k, v] of Object.entries(mod.globals))
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    dawn = mod.create([]);
  }
  return { gpu: dawn, runtime: 'dawn' };
}

export const ADVICE = { browser: BROWSER_ADVICE, node: NODE_ADVICE };
