/**
 * The benchmark page's own Vite build (separate from the app's root vite.config.ts):
 * `vite build --config bench/vite.config.ts` → node_modules/.cache/tessera-bench/ (kernels.html + assets,
 * including onnxruntime-web's wasm, which Vite copies by itself).
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  logLevel: 'warn',
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../node_modules/.cache/tessera-bench', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 100_000,
    rollupOptions: { input: { kernels: fileURLToPath(new URL('./kernels.html', import.meta.url)) } },
  },
});
