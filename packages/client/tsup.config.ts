import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: {
    // The root build runs workspaces alphabetically, so this package builds before
    // @loom/core has a dist: read core's types from its source. The import stays external.
    compilerOptions: { baseUrl: '.', paths: { '@loom/core': ['../core/src/index.ts'] }, rootDir: '..' },
  },
  sourcemap: true,
  clean: true,
  target: 'es2022',
})
