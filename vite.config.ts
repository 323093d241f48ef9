import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';
import { coordinatorProxies } from './scripts/api-proxy.ts';
import { expandWgsl } from './src/gpu/wgsl-include.ts';

/**
 * Cross-origin isolation (COOP + COEP) on every page we serve: onnxruntime-web's threaded wasm needs
 * SharedArrayBuffer, which browsers only grant to isolated pages. Everything we load is same-origin.
 */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

const SHADERS = fileURLToPath(new URL('./shaders/', import.meta.url));

/**
 * `.wgsl?raw` imports with their `#include`s expanded (src/gpu/wgsl-include.ts), before Vite's own `?raw`
 * loader: the same text the Node hooks (scripts/wgsl-hooks.ts) give. vitest.config.ts uses it too.
 */
export function wgslInclude(): Plugin {
  return {
    name: 'tessera:wgsl-include',
    enforce: 'pre',
    load(id) {
      const m = /^(.*\.wgsl)\?raw$/.exec(id);
      if (!m) return null;
      const file = m[1];
      const entry = file.startsWith(SHADERS) ? file.slice(SHADERS.length) : file;
      const read = (path: string) => {
        try {
          return readFileSync(SHADERS + path, 'utf8');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
          throw e;
        }
      };
      const { code, includes } = expandWgsl(entry, readFileSync(file, 'utf8'), read);
      // Editing an included file reloads the shaders that include it.
      for (const path of includes) this.addWatchFile(SHADERS + path);
      return `export default ${JSON.stringify(code)};`;
    },
  };
}

export default defineConfig({
  plugins: [wgslInclude(), react()],
  // 127.0.0.1 is a secure context (WebGPU needs one) and is not reachable from other machines.
  // /api goes to the coordinator (npm start proxies it the same way), so the tab talks to it same-origin; the
  // proxy passes the coordinator's Host and Origin checks (scripts/api-proxy.ts).
  server: {
    host: '127.0.0.1',
    headers: ISOLATION_HEADERS,
    proxy: coordinatorProxies(process.env.TESSERA_COORDINATOR ?? 'http://127.0.0.1:8787'),
  },
  preview: { host: '127.0.0.1', headers: ISOLATION_HEADERS },
  build: {
    target: 'es2023',
    // libp2p (loaded only when a tab joins the swarm) is one ~720 kB chunk; that is expected.
    chunkSizeWarningLimit: 1024,
    rolldownOptions: {
      // src/gpu/acquire.ts imports these only when running in Node (Dawn); the browser never reaches them.
      external: ['webgpu', 'node:fs'],
      // Class names survive minification: typed errors are reported by name ("DeviceLostError: …") and the
      // app maps the name back to advice.
      output: { keepNames: true },
    },
  },
});
