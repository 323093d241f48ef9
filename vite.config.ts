import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

/**
 * Cross-origin isolation (COOP + COEP) on every page we serve: onnxruntime-web's threaded wasm needs
 * SharedArrayBuffer, which browsers only grant to isolated pages. Everything we load is same-origin.
 */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  plugins: [react()],
  // 127.0.0.1 is a secure context (WebGPU needs one) and is not reachable from other machines.
  // /api goes to the coordinator (npm start proxies it the same way), so the tab talks to it same-origin.
  server: {
    host: '127.0.0.1',
    headers: ISOLATION_HEADERS,
    proxy: {
      '/api': process.env.TESSERA_COORDINATOR ?? 'http://127.0.0.1:8787',
      '/v1': process.env.TESSERA_COORDINATOR ?? 'http://127.0.0.1:8787',
    },
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
