import { storeContract } from '@loom/core/testing'
import { describe } from 'vitest'
import { DATABASE_URL, NEEDS_SERVER, scratchStore, sharedPglite, sharedPool } from './databases'

describe('postgresStore on PGlite', () => {
  storeContract('postgresStore (PGlite)', async () => scratchStore((await sharedPglite()).sql))
})

describe.skipIf(!DATABASE_URL)(`postgresStore on PostgreSQL ${NEEDS_SERVER}`, () => {
  storeContract('postgresStore (PostgreSQL)', async () => scratchStore(sharedPool()))
})
