import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'bench',
    include: ['*.test.ts'],
    // PGlite starts a WebAssembly PostgreSQL per file, and seeding moves hundreds of runs one call at a time.
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
})
