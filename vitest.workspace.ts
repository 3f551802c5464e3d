/**
 * The test projects of the monorepo. Vitest 4 no longer reads this file by itself:
 * `vitest.config.ts` imports it and passes it to `test.projects`, so this list is the
 * single place that says which packages have tests.
 */
export default [
  'packages/core',
  'packages/postgres',
  'packages/mqtt',
  'packages/temporal',
  'packages/hono',
  'packages/client',
  'examples/node',
  'examples/bun',
  'examples/workerd',
  'packages/worker',
  'examples/worker',
  'sveltekit-console',
  'tests/docs',
  'tests/packages',
  'tests/consumer',
  'tests/faults',
  'tests/bench',
]
