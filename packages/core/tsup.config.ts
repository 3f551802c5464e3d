import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts', 'src/store.ts', 'src/engine.ts', 'src/testing.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  external: ['vitest'],
})
