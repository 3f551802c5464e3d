import { describe, inject } from 'vitest'
import { createLoom, memoryStore } from '@loom/core'
import { engineContract, loomContract } from '@loom/core/testing'
import { createHarness } from './support/harness'

const address = inject('temporalAddress')
// Dispatch retries kept short so the dispatch-failure tests end quickly.
const engine = { run: { dispatchAttempts: 2, dispatchRetryIntervalMs: 50 } }

describe('@loom/temporal', () => {
  // Each test gets its own Loom worker on a fresh task queue, over the suite's store and dispatcher.
  engineContract('temporalEngine', async ({ store, dispatcher }) => {
    const harness = await createHarness({ address, store, dispatcher, engine })
    return { engine: harness.engine, close: () => harness.close() }
  })

  loomContract('createLoom(memoryStore, temporalEngine)', async ({ dispatcher, dryRunner, reconcile }) => {
    const store = memoryStore()
    // The worker's run changes (completed, awaiting review) reach subscribers through the store's activity log.
    const harness = await createHarness({ address, store, dispatcher, engine })
    const loom = createLoom({ store, engine: harness.engine, dispatcher, dryRunner, reconcile, onError: () => {} })
    await loom.ready
    const built = loom
    return {
      loom: built,
      close: async () => {
        await built.close()
        await harness.close()
      },
    }
  })
})
