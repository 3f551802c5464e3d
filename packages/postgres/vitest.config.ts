import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'postgres',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // PGlite starts a WebAssembly PostgreSQL per file; the concurrency tests run thousands of transactions.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
