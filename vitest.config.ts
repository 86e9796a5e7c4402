import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Kernels and sandboxes are real processes; two cores cannot run many test files at once.
    maxWorkers: 2,
  },
});
