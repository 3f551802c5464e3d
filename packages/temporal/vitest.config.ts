import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'temporal',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Each file starts Temporal workers; two cores are shared, so files run one at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
})
