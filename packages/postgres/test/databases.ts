/**
 * The databases the tests run on: PGlite always (one per test file), and the real
 * PostgreSQL named by `DATABASE_URL` when it is set (CI sets it). Each store gets a fresh
 * schema, dropped when the test is done, so files and parallel runs never share tables.
 */
import postgres, { type Sql } from 'postgres'
import { afterAll } from 'vitest'
import { migrate, pglite, postgresStore, type EmbeddedPostgres, type PostgresStore } from '../src/index'

export const DATABASE_URL = process.env.DATABASE_URL

/** The describe-title suffix of tests that only a PostgreSQL server can run. */
export const NEEDS_SERVER = '(needs a real PostgreSQL: set DATABASE_URL)'

/** A pool on the real PostgreSQL, ended after the file's tests. */
export function serverPool(options: postgres.Options<{}> = {}): Sql<{}> {
  if (!DATABASE_URL) throw new Error('DATABASE_URL is not set')
  const sql = postgres(DATABASE_URL, { onnotice: () => {}, ...options })
  afterAll(() => sql.end({ timeout: 5 }))
  return sql
}

let embedded: Promise<EmbeddedPostgres> | undefined

/** This file's PGlite (in memory), started on first use and closed after the file's tests. */
export function sharedPglite(): Promise<EmbeddedPostgres> {
  if (!embedded) {
    embedded = pglite()
    const opened = embedded
    afterAll(async () => (await opened).close())
  }
  return embedded
}

export function freshSchema(): string {
  return `loom_test_${Math.random().toString(36).slice(2, 10)}`
}

/** A migrated store in a fresh schema of `sql`; `close` drops the schema. */
export async function scratchStore(sql: Sql<any>): Promise<{ store: PostgresStore; schema: string; close: () => Promise<void> }> {
  const schema = freshSchema()
  await migrate(sql, { schema })
  return {
    store: postgresStore(sql, { schema }),
    schema,
    close: async () => {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    },
  }
}
