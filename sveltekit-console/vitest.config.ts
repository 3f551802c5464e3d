import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'console',
    include: ['src/**/*.test.ts', 'tests/**/*.test.ts'],
    // The browser tests share one built server and one Chromium; run files one at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
})
