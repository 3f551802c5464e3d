/**
 * bench/big-migrations.ts at small sizes, as a test of correctness, not of time, so that the
 * benchmark cannot rot: on the memory store, PGlite and (when DATABASE_URL is set) PostgreSQL,
 * the seeding leaves the statuses it plans, every page the benchmark times holds what the full
 * list filtered in JS says, the timed functions report no wrong answer, a submission reads back
 * whole, and the summaries count what was seeded.
 */
import { type CandidateQuery, type CandidateWithStatus, type MigrationStore, memoryStore } from '@loom/core'
import postgres, { type Sql } from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate, pglite, postgresStore, type EmbeddedPostgres } from '../../packages/postgres/src/index'
import {
  CURSOR_FROM_END,
  candidates,
  measurePages,
  measureSubmit,
  measureSummaries,
  memoryBare,
  NEEDLE,
  NEEDLES,
  PAGE,
  pageProblem,
  pageQueries,
  type Seeded,
  seedMigrations,
  sqlBare,
} from '../../bench/big-migrations'

const SIZES = [200, 400]
const READS = 3
const CONCURRENCY = 4
const DATABASE_URL = process.env.DATABASE_URL

interface Target {
  /** A fresh store; on SQL, in a schema of its own, dropped after the file. */
  open(): Promise<{ store: MigrationStore; sql?: Sql<any>; schema?: string }>
  close(): Promise<void>
}

const memory = (): Target => ({ open: async () => ({ store: memoryStore() }), close: async () => {} })

function onSql(connect: () => Promise<{ sql: Sql<any>; end: () => Promise<void> }>): Target {
  let client: Promise<{ sql: Sql<any>; end: () => Promise<void> }> | undefined
  const schemas: string[] = []
  return {
    async open() {
      const { sql } = await (client ??= connect())
      const schema = `loom_test_${Math.random().toString(36).slice(2, 10)}`
      schemas.push(schema)
      await migrate(sql, { schema })
      return { store: postgresStore(sql, { schema, timeoutMs: 60_000 }), sql, schema }
    },
    async close() {
      if (!client) return
      const { sql, end } = await client
      for (const schema of schemas) await sql.unsafe(`drop schema if exists "${schema}" cascade`)
      await end()
    },
  }
}

const onPglite = () =>
  onSql(async () => {
    const db: EmbeddedPostgres = await pglite()
    return { sql: db.sql, end: () => db.close() }
  })

const onPostgres = () =>
  onSql(async () => {
    const sql = postgres(DATABASE_URL!, { max: CONCURRENCY, onnotice: () => {} })
    return { sql, end: () => sql.end({ timeout: 5 }) }
  })

/** The page `query` should give, worked out in JS from the store's own full list. */
function filtered(full: CandidateWithStatus[], query: CandidateQuery): { ids: string[]; total: number } {
  const needle = query.q?.toLowerCase()
  const matches = full.filter(
    (c) =>
      (!query.status || c.status === query.status) &&
      (!query.lastOutcome || (c.status === 'not_started' && c.lastAttempt?.outcome === query.lastOutcome)) &&
      (!needle || [c.id, ...Object.values(c.metadata ?? {})].some((value) => value.toLowerCase().includes(needle))),
  )
  const from = query.after === undefined ? 0 : full.findIndex((c) => c.id === query.after) + 1
  const after = full.slice(from).filter((c) => matches.includes(c))
  return { ids: after.slice(0, query.limit).map((c) => c.id), total: matches.length }
}

function suite(name: string, target: () => Target): void {
  describe(`bench/big-migrations.ts on ${name}`, () => {
    const t = target()
    let store: MigrationStore
    let sql: Sql<any> | undefined
    let schema: string | undefined
    let seeded: Seeded[]

    beforeAll(async () => {
      ;({ store, sql, schema } = await t.open())
      seeded = await seedMigrations(
        store,
        SIZES.map((size) => ({ migrationId: `pages-${size}`, size })),
        CONCURRENCY,
      )
    })
    afterAll(() => t.close())

    it('seeds 243-byte candidates, 2 % queued and 1 % failed through the store, 10 carrying the needle', async () => {
      for (const m of seeded) {
        const n = m.candidates.length
        const full = (await store.listCandidates(m.migrationId))!.candidates
        expect(full.map((c) => c.id)).toEqual(candidates(n).map((c) => c.id))
        expect(new Set(candidates(n).map((c) => JSON.stringify(c).length))).toEqual(new Set([243]))
        const queued = full.filter((c) => c.status === 'queued').map((c) => c.id)
        const failed = full.filter((c) => c.status === 'not_started' && c.lastAttempt?.outcome === 'failed').map((c) => c.id)
        expect(queued).toEqual([...m.queued])
        expect(failed).toEqual([...m.failed])
        expect([queued.length, failed.length]).toEqual([n / 50, n / 100])
        expect(full.filter((c) => c.metadata?.env === NEEDLE)).toHaveLength(NEEDLES)
        const summary = await store.getMigration(m.migrationId)
        expect(summary!.counts).toEqual({ not_started: n - n / 50, queued: n / 50, running: 0, completed: 0, failed: n / 100 })
      }
    })

    it('gets, for every query it times, the page and total of the full list filtered in JS', async () => {
      for (const m of seeded) {
        const n = m.candidates.length
        const full = (await store.listCandidates(m.migrationId))!.candidates
        const queries = pageQueries(m)
        expect(queries.map((q) => q.name)).toEqual([
          'first page',
          'status=queued',
          'lastOutcome=failed',
          `q=${NEEDLE}`,
          'after=<60th from last>',
        ])
        for (const { name, query } of queries) {
          const page = (await store.listCandidates(m.migrationId, query))!
          expect({ name, ids: page.candidates.map((c) => c.id), total: page.total }).toEqual({ name, ...filtered(full, query) })
          expect(pageProblem(m, query, page)).toBeUndefined()
        }
        // The cursor's page is the tail: the 50 candidates after the 60th from the last.
        const cursor = (await store.listCandidates(m.migrationId, queries[4]!.query))!
        expect(cursor.candidates.map((c) => c.id)).toEqual(
          full.slice(n - CURSOR_FROM_END + 1, n - CURSOR_FROM_END + 1 + PAGE).map((c) => c.id),
        )
        expect(cursor.total).toBe(n)
        const needles = (await store.listCandidates(m.migrationId, queries[3]!.query))!
        expect(needles.total).toBe(NEEDLES)
      }
    })

    it("refuses a page that is off by one (the benchmark's check is not vacuous)", async () => {
      const m = seeded[0]!
      const page = (await store.listCandidates(m.migrationId, { limit: PAGE + 1 }))!
      expect(pageProblem(m, { limit: PAGE }, { candidates: page.candidates.slice(1), total: page.total })).toMatch(/^ids /)
      expect(pageProblem(m, { limit: PAGE }, { candidates: page.candidates.slice(0, PAGE), total: page.total - 1 })).toMatch(/^total /)
    })

    it('times every query and the bare baseline at every size with no wrong answer', async () => {
      const bare = sql ? await sqlBare(sql, schema!, seeded) : memoryBare(seeded)
      const timings = await measurePages(store, seeded, { reads: READS, bare })
      expect(timings.filter((timing) => timing.error)).toEqual([])
      expect(timings.map((timing) => `${timing.size} ${timing.query}`)).toEqual(
        SIZES.flatMap((size) => ['bare', ...pageQueries(seeded[0]!).map((q) => q.name)].map((query) => `${size} ${query}`)),
      )
      expect(timings.every((timing) => timing.ms! > 0)).toBe(true)
    })

    if (name !== 'memory') {
      it('submits a list, then the same list again, and reads it back whole each time', async () => {
        const submit = await t.open()
        const timing = await measureSubmit(submit.store, submit.sql!, submit.schema!, { size: 400, rounds: 2 })
        expect(timing.error).toBeUndefined()
        expect([timing.bareMs, timing.firstMs, timing.resubmitMs].every((value) => value! > 0)).toBe(true)
        for (const migrationId of ['submit-0', 'submit-1']) {
          const listed = (await submit.store.listCandidates(migrationId))!
          expect(listed.candidates.map((c) => c.id)).toEqual(candidates(400).map((c) => c.id))
          expect(listed.candidates.every((c) => c.status === 'not_started')).toBe(true)
        }
        const [bare] = await submit.sql!.unsafe(`select count(*)::int as n from "${submit.schema}".bare_submit_1`)
        expect(bare!.n).toBe(400)
      })
    }

    it('lists the summaries of every migration with the counts seeded', async () => {
      const summaries = await t.open()
      const timing = await measureSummaries(summaries.store, { migrations: 5, size: 100, reads: READS, concurrency: CONCURRENCY })
      expect(timing.error).toBeUndefined()
      const list = await summaries.store.listMigrations()
      expect(list.map((s) => s.id)).toEqual(['summary-0000', 'summary-0001', 'summary-0002', 'summary-0003', 'summary-0004'])
      for (const s of list) expect(s.counts).toEqual({ not_started: 98, queued: 2, running: 0, completed: 0, failed: 1 })
      expect(timing.listBytes).toBe(Buffer.byteLength(JSON.stringify(await summaries.store.listMigrations())))
      expect([timing.listMs, timing.listStringifyMs, timing.getMs, timing.getStringifyMs].every((value) => value! > 0)).toBe(true)
    })
  })
}

suite('memory', memory)
suite('PGlite', onPglite)
describe.skipIf(!DATABASE_URL)('on PostgreSQL (needs a real PostgreSQL: set DATABASE_URL)', () => {
  suite('PostgreSQL', onPostgres)
})
