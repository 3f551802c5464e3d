import { LoomError } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { DATABASE_URL, NEEDS_SERVER, freshSchema, onEachDatabase, serverPool } from '../test/databases'
import { SCHEMA_VERSION, migrate } from './schema'

const TABLES = ['cancelled_attempts', 'candidates', 'migrations', 'run_steps', 'runs', 'schema_migrations', 'steps']

onEachDatabase((db) => {
  it('creates the tables once; a second call applies nothing', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    try {
      expect(await migrate(sql, { schema })).toEqual({ applied: [1], version: SCHEMA_VERSION })
      expect(await migrate(sql, { schema })).toEqual({ applied: [], version: SCHEMA_VERSION })
      const tables = await sql`select table_name from information_schema.tables where table_schema = ${schema} order by table_name`
      expect(tables.map((t) => t.table_name)).toEqual(TABLES)
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('refuses a schema that a newer version of the package migrated, changing nothing', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    try {
      await migrate(sql, { schema })
      await sql.unsafe(`insert into "${schema}".schema_migrations (version, name) values (${SCHEMA_VERSION + 1}, 'from the future')`)
      const error = await migrate(sql, { schema }).catch((e: unknown) => e)
      expect(LoomError.is(error, 'unavailable')).toBe(true)
      expect((error as Error).message).toContain('upgrade the package')
      const versions = await sql.unsafe(`select version from "${schema}".schema_migrations order by version`)
      expect(versions.map((v) => v.version)).toEqual([1, SCHEMA_VERSION + 1])
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })
})

describe.skipIf(!DATABASE_URL)(`migrate from two processes at once ${NEEDS_SERVER}`, () => {
  const one = DATABASE_URL ? serverPool({ max: 2 }) : undefined
  const two = DATABASE_URL ? serverPool({ max: 2 }) : undefined

  it('applies each version exactly once when two pools migrate the same schema together', async () => {
    for (let round = 0; round < 5; round++) {
      const schema = freshSchema()
      try {
        const results = await Promise.all([migrate(one!, { schema }), migrate(two!, { schema }), migrate(one!, { schema })])
        expect(results.flatMap((r) => r.applied)).toEqual([1])
        const versions = await one!.unsafe(`select version from "${schema}".schema_migrations`)
        expect(versions.map((v) => v.version)).toEqual([1])
      } finally {
        await one!.unsafe(`drop schema if exists "${schema}" cascade`)
      }
    }
  })
})
