import { defineConfig } from 'tsup'

export default defineConfig({
  // workflows.ts is its own entry: the worker bundles dist/workflows.js for Temporal's sandbox.
  entry: ['src/index.ts', 'src/workflows.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  external: [/^@temporalio\//, '@loom/core'],
})
