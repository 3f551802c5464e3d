/**
 * The databases the tests run on: PGlite always (one per test file), and the real
 * PostgreSQL named by `DATABASE_URL` when it is set (CI sets it). Each store gets a fresh
 * schema, dropped when the test is done, so files and parallel runs never share tables.
 */
import postgres, { type Sql } from 'postgres'
import { afterAll, describe } from 'vitest'
import { migrate, pglite, postgresStore, type EmbeddedPostgres, type PostgresStore } from '../src/index'

export const DATABASE_URL = process.env.DATABASE_URL

/** The describe-title suffix of tests that only a PostgreSQL server can run. */
export const NEEDS_SERVER = '(needs a real PostgreSQL: set DATABASE_URL)'

let sent = 0

/** How many statements this file's clients have sent so far (to prove a call makes a fixed number). */
export function statementsSent(): number {
  return sent
}

const countStatement = () => {
  sent++
}

const pools: Sql<{}>[] = []
let embedded: Promise<EmbeddedPostgres> | undefined

// Registered while the test file imports this module, so it runs after all of the file's tests.
afterAll(async () => {
  await Promise.all(pools.map((sql) => sql.end({ timeout: 5 })))
  if (embedded) await (await embedded).close()
})

/** A new pool on the real PostgreSQL, ended after the file's tests. */
export function serverPool(options: postgres.Options<{}> = {}): Sql<{}> {
  if (!DATABASE_URL) throw new Error('DATABASE_URL is not set')
  const sql = postgres(DATABASE_URL, { onnotice: () => {}, debug: countStatement, ...options })
  pools.push(sql)
  return sql
}

let shared: Sql<{}> | undefined

/** This file's pool on the real PostgreSQL. */
export function sharedPool(): Sql<{}> {
  return (shared ??= serverPool())
}

/** This file's PGlite (in memory), started on first use and closed after the file's tests. */
export function sharedPglite(): Promise<EmbeddedPostgres> {
  return (embedded ??= pglite({ client: { debug: countStatement } }))
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

export interface Database {
  name: string
  /** This file's client on the database (shared by its tests). */
  sql: () => Promise<Sql<any>>
}

/**
 * Defines the tests of `define` once on PGlite and once on the real PostgreSQL; without
 * `DATABASE_URL` the PostgreSQL block is skipped, saying why.
 */
export function onEachDatabase(define: (db: Database) => void): void {
  describe('on PGlite', () => define({ name: 'PGlite', sql: async () => (await sharedPglite()).sql }))
  describe.skipIf(!DATABASE_URL)(`on PostgreSQL ${NEEDS_SERVER}`, () => {
    define({ name: 'PostgreSQL', sql: async () => sharedPool() })
  })
}
