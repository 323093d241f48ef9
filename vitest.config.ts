import { defineConfig } from 'vitest/config';
import { wgslInclude } from './vite.config.ts';

export default defineConfig({
  // vitest does not read vite.config.ts when this file exists: shaders need the same #include expansion.
  plugins: [wgslInclude()],
  test: {
    include: ['tests/**/*.test.ts'],
    exclude: ['tests/browser/**'],
    // One Dawn device at a time: lavapipe already spreads each dispatch over both cores.
    fileParallelism: false,
    pool: 'forks',
    // Generous: on a fresh machine lavapipe compiles each WGSL pipeline from scratch (the attention kernels
    // alone take minutes cold; Mesa's disk cache makes later runs take seconds).
    testTimeout: 900_000,
    hookTimeout: 60_000,
  },
});
