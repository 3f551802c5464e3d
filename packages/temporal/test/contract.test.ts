import { describe, inject } from 'vitest'
import { engineContract } from '@loom/core/testing'
import { createHarness } from './support/harness'

const address = inject('temporalAddress')

describe('@loom/temporal', () => {
  // Each test gets its own Loom worker on a fresh task queue, over the suite's store and dispatcher.
  engineContract('temporalEngine', async ({ store, dispatcher }) => {
    const harness = await createHarness({ address, store, dispatcher, engine: { run: { dispatchAttempts: 2, dispatchRetryIntervalMs: 50 } } })
    return { engine: harness.engine, close: () => harness.close() }
  })
})
