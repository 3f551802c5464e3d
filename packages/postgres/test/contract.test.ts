import { storeContract } from '@loom/core/testing'
import { describe } from 'vitest'
import { DATABASE_URL, NEEDS_SERVER, scratchStore, serverPool, sharedPglite } from './databases'

describe('postgresStore on PGlite', () => {
  storeContract('postgresStore (PGlite)', async () => scratchStore((await sharedPglite()).sql))
})

describe.skipIf(!DATABASE_URL)(`postgresStore on PostgreSQL ${NEEDS_SERVER}`, () => {
  const sql = DATABASE_URL ? serverPool() : undefined
  storeContract('postgresStore (PostgreSQL)', async () => scratchStore(sql!))
})
