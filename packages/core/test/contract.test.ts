import { describe } from 'vitest'
import { createLoom, localEngine, memoryStore } from '../src/index'
import { engineContract, loomContract, storeContract } from '../src/testing'

describe('core', () => {
  storeContract('memoryStore', async () => ({ store: memoryStore() }))

  engineContract('localEngine', async () => ({
    engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 10, onError: () => {} }),
  }))

  loomContract('createLoom(memoryStore, localEngine)', async ({ dispatcher, dryRunner, reconcile }) => {
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 10 }),
      dispatcher,
      dryRunner,
      reconcile,
    })
    await loom.ready
    return { loom, close: () => loom.close() }
  })
})
