import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'mqtt',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // One broker serves every test file (Mosquitto in CI, or each file's own aedes): run files one at a time.
    fileParallelism: false,
    // Integration tests wait on a broker (a restart, a timeout being proven); each wait is bounded on its own.
    testTimeout: 30_000,
  },
})
