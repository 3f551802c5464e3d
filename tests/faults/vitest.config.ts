import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'faults',
    include: ['*.test.ts'],
    // Each file starts and kills real processes (databases, brokers, Temporal, Loom, workers):
    // on two shared cores they run one at a time.
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 120_000,
  },
})
