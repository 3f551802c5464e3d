import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'example-worker',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // End-to-end runs start servers, a broker and git: give them room on a busy machine.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
