import { createLoom, localEngine } from '@loom/core'
import { engineContract, loomContract, storeContract } from '@loom/core/testing'
import { afterAll, describe } from 'vitest'
import { DATABASE_URL, NEEDS_SERVER, scratchStore, sharedPglite, sharedPool } from './databases'

describe('postgresStore on PGlite', () => {
  storeContract('postgresStore (PGlite)', async () => scratchStore((await sharedPglite()).sql))

  // The whole Loom over this store: the status rules, events and runs, not only the port.
  loomContract('createLoom(postgresStore (PGlite), localEngine)', async ({ dispatcher, dryRunner, reconcile }) => {
    const scratch = await scratchStore((await sharedPglite()).sql)
    const loom = createLoom({
      store: scratch.store,
      engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 10 }),
      dispatcher,
      dryRunner,
      reconcile,
    })
    await loom.ready
    return {
      loom,
      close: async () => {
        await loom.close()
        await scratch.close()
      },
    }
  })
})

describe.skipIf(!DATABASE_URL)(`postgresStore on PostgreSQL ${NEEDS_SERVER}`, () => {
  storeContract('postgresStore (PostgreSQL)', async () => scratchStore(sharedPool()))

  // The local engine keeps each run's progress in this store, so it is checked on it too.
  const scratches: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const drop of scratches) await drop()
  })
  engineContract(
    'localEngine over postgresStore (PostgreSQL)',
    async () => ({ engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 10, onError: () => {} }) }),
    {
      store: async () => {
        const scratch = await scratchStore(sharedPool())
        scratches.push(scratch.close)
        return scratch.store
      },
    },
  )
})
