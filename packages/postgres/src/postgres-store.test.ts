import { createServer } from 'node:net'
import { LoomError, MAX_OFFSET, type Candidate } from '@loom/core'
import type { MigrationDefinition, StatusAction } from '@loom/core/store'
import postgres from 'postgres'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { onEachDatabase, scratchStore, statementsSent } from '../test/databases'
import { postgresStore, type PostgresStore } from './index'
import { channelOf } from './store/watch'

const definition = (id = 'app-chart'): MigrationDefinition => ({
  id,
  name: 'App chart',
  steps: [{ name: 'update-chart', workerApp: 'charts', config: { chart: 'app\u0000"\\' } }],
})

/** Strings that break naive quoting, JSON handling or text columns. */
const tricky = {
  zeta: `it's "quoted" \\ and \\\\ and \\u0000 spelled out`,
  alpha: 'NUL \u0000 inside, lone surrogate \ud800, emoji 🚀, naïve café, 日本語',
  'key with "quotes" and \u0000': 'value',
  sql: "'); DROP TABLE candidates; --",
  long: 'é🚀x'.repeat((64 * 1024) / 4),
}

onEachDatabase((db) => {
  let store: PostgresStore
  let close: () => Promise<void>

  beforeEach(async () => {
    ;({ store, close } = await scratchStore(await db.sql()))
  })
  afterEach(async () => close())

  const move = (candidateId: string, action: StatusAction, migrationId = 'app-chart') =>
    store.transition({ migrationId, candidateId, action, at: new Date().toISOString() })

  describe('what goes in comes out byte for byte', () => {
    it('keeps metadata, state and files exactly, key order included, through every read', async () => {
      const candidate: Candidate = {
        id: 'svc-0',
        kind: `kind "with" quotes \\ 🚀`,
        metadata: tricky,
        state: { json: '{"a":[1,2]}', nul: '\u0000' },
        files: [{ name: 'chart', repo: 'acme/"x"', files: [{ path: 'a\\b', url: 'http://x/?q=\u00e9' }] }],
      }
      await store.upsertMigration(definition(), [candidate])
      const fromGet = (await store.getCandidate('app-chart', 'svc-0'))!.candidate
      const fromList = (await store.listCandidates('app-chart'))!.candidates[0]!
      expect(JSON.stringify(fromGet)).toBe(JSON.stringify(candidate))
      expect(JSON.stringify(fromList)).toBe(JSON.stringify({ ...candidate, status: 'not_started' }))
      expect(Object.keys(fromGet.metadata!)).toEqual(Object.keys(tricky))
      expect(fromGet.metadata!.long).toHaveLength(64 * 1024)
      const migration = (await store.getMigration('app-chart'))!
      expect(migration.steps[0]!.config).toEqual({ chart: 'app\u0000"\\' })
    })

    it('keeps a step report with the same strings', async () => {
      await store.upsertMigration(definition(), [{ id: 'svc-0' }])
      await move('svc-0', 'queue')
      await move('svc-0', 'execute')
      const result = { stepName: 'update-chart', candidate: { id: 'svc-0', metadata: tricky }, success: true, metadata: tricky }
      const at = '2026-03-04T05:06:07.089Z'
      expect((await store.recordStep({ migrationId: 'app-chart', candidateId: 'svc-0', result, done: true, at })).outcome).toBe('recorded')
      const [run] = await store.listRuns('running')
      expect(JSON.stringify(run!.steps)).toBe(JSON.stringify([{ result, done: true, at }]))
      const found = await store.getCandidate('app-chart', 'svc-0')
      expect(found!.run!.steps[0]!.result).toEqual(result)
    })

    it('carries a step into a resumed attempt byte for byte, with the attempt it came from', async () => {
      await store.upsertMigration(
        {
          id: 'app-chart',
          name: 'App chart',
          steps: [
            { name: 'update-chart', workerApp: 'charts' },
            { name: 'open-pr', workerApp: 'charts' },
          ],
        },
        [{ id: 'svc-0' }],
      )
      await move('svc-0', 'queue')
      const first = await move('svc-0', 'execute')
      const result = { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true, metadata: tricky }
      const at = '2026-03-04T05:06:07.089Z'
      await store.recordStep({ migrationId: 'app-chart', candidateId: 'svc-0', result, done: true, at })
      await move('svc-0', 'fail')
      const queued = await move('svc-0', 'queue')
      const attempt = first.ok ? first.run.attempt : -1
      const carried = [{ result, done: true, at, carriedFrom: attempt }]
      expect(queued.ok && JSON.stringify(queued.run.resumable)).toBe(JSON.stringify(carried))
      expect(JSON.stringify((await store.getCandidate('app-chart', 'svc-0'))!.run!.resumable)).toBe(JSON.stringify(carried))
      const resumed = await store.transition({ migrationId: 'app-chart', candidateId: 'svc-0', action: 'execute', at, resume: true })
      expect(resumed.ok && [resumed.run.currentStep, resumed.run.attempt > attempt]).toEqual([0, true])
      const run = (await store.getCandidate('app-chart', 'svc-0'))!.run!
      expect(JSON.stringify(run.steps)).toBe(JSON.stringify(carried))
      expect(Object.keys(run.steps[0]!.result.metadata!)).toEqual(Object.keys(tricky))
      // Undoing that execute empties the steps again, and they stay what a resume would carry.
      expect((await move('svc-0', 'unexecute')).ok).toBe(true)
      const undone = (await store.getCandidate('app-chart', 'svc-0'))!.run!
      expect([undone.steps, undone.currentStep, JSON.stringify(undone.resumable)]).toEqual([[], 0, JSON.stringify(carried)])
    })
  })

  describe('listing', () => {
    it('matches q case-insensitively the way matchesQuery does, taking % and _ literally', async () => {
      await store.upsertMigration(definition(), [
        { id: 'ecole', metadata: { name: 'École Polytechnique' } },
        { id: 'pct', metadata: { note: '100% done' } },
        { id: 'under_score' },
        { id: 'nul', metadata: { raw: 'a\u0000b' } },
        { id: 'plain', metadata: { note: '100 percent' } },
      ])
      const ids = async (q: string) => (await store.listCandidates('app-chart', { q }))!.candidates.map((c) => c.id)
      expect(await ids('éCOLE')).toEqual(['ecole'])
      expect(await ids('0%')).toEqual(['pct'])
      expect(await ids('r_s')).toEqual(['under_score'])
      expect(await ids('_')).toEqual(['under_score'])
      expect(await ids('a\u0000B')).toEqual(['nul'])
      expect(await ids('zzz')).toEqual([])
    })

    it('pages past the end with the total still counted', async () => {
      await store.upsertMigration(
        definition(),
        Array.from({ length: 5 }, (_, i) => ({ id: `svc-${i}` })),
      )
      await move('svc-3', 'queue')
      expect(await store.listCandidates('app-chart', { offset: 10 })).toEqual({ candidates: [], total: 5 })
      expect(await store.listCandidates('app-chart', { status: 'queued', limit: 1 })).toEqual({
        candidates: [{ id: 'svc-3', status: 'queued', runId: 'app-chart__svc-3' }],
        total: 1,
      })
      expect((await store.listCandidates('app-chart', { limit: 2, offset: 2 }))!.candidates.map((c) => c.id)).toEqual(['svc-2', 'svc-3'])
    })

    it('takes every offset core accepts: MAX_OFFSET is an empty page with the total, not an error', async () => {
      await store.upsertMigration(
        definition(),
        Array.from({ length: 3 }, (_, i) => ({ id: `svc-${i}` })),
      )
      expect(MAX_OFFSET).toBe(2 ** 31 - 1)
      expect(await store.listCandidates('app-chart', { offset: MAX_OFFSET })).toEqual({ candidates: [], total: 3 })
      expect(await store.listCandidates('app-chart', { offset: MAX_OFFSET, limit: 10_000, q: 'svc', status: 'not_started' })).toEqual({
        candidates: [],
        total: 3,
      })
      expect(await store.listCandidates('app-chart', { offset: MAX_OFFSET - 1, limit: 1 })).toEqual({ candidates: [], total: 3 })
      expect((await store.listCandidates('app-chart', { offset: 2, limit: 10_000 }))!.candidates.map((c) => c.id)).toEqual(['svc-2'])
      expect(await store.listCandidates('no-such-migration', { offset: MAX_OFFSET })).toBeUndefined()
      // Past what core accepts (int4), the store still pages, should someone call it directly.
      expect(await store.listCandidates('app-chart', { offset: 2 ** 31, limit: 2 ** 31 })).toEqual({ candidates: [], total: 3 })
      expect(await store.listCandidates('app-chart', { offset: Number.MAX_SAFE_INTEGER })).toEqual({ candidates: [], total: 3 })
    })

    it('lists 500 candidates with their statuses in one statement', async () => {
      await store.upsertMigration(
        definition(),
        Array.from({ length: 500 }, (_, i) => ({ id: `svc-${i}`, metadata: { team: `t${i % 7}` } })),
      )
      for (const id of ['svc-1', 'svc-3', 'svc-10', 'svc-499']) await move(id, 'queue')
      const before = statementsSent()
      const page = (await store.listCandidates('app-chart', { q: 'T3' }))!
      expect(statementsSent() - before).toBe(1)
      expect(page.total).toBe(71)
      expect(page.candidates.filter((c) => c.status === 'queued').map((c) => [c.id, c.runId])).toEqual([
        ['svc-3', 'app-chart__svc-3'],
        ['svc-10', 'app-chart__svc-10'],
      ])
      const all = statementsSent()
      expect((await store.listCandidates('app-chart'))!.candidates).toHaveLength(500)
      expect(statementsSent() - all).toBe(1)
    })

    it('keeps submission order across replacements', async () => {
      await store.upsertMigration(
        definition(),
        ['c', 'a', 'b'].map((id) => ({ id })),
      )
      await move('a', 'queue')
      await store.replaceCandidates(
        'app-chart',
        ['z', 'b', 'y'].map((id) => ({ id })),
      )
      expect((await store.listCandidates('app-chart'))!.candidates.map((c) => c.id)).toEqual(['z', 'b', 'y', 'a'])
    })
  })

  describe('attempts', () => {
    it('come from one sequence: unique across migrations and larger after a candidate is removed and re-added', async () => {
      await store.upsertMigration(definition('one'), [{ id: 'svc-0' }])
      await store.upsertMigration(definition('two'), [{ id: 'svc-0' }])
      const first = await move('svc-0', 'queue', 'one')
      const other = await move('svc-0', 'queue', 'two')
      expect(first.ok && other.ok).toBe(true)
      if (!first.ok || !other.ok) return
      expect(other.run.attempt).not.toBe(first.run.attempt)
      await move('svc-0', 'dequeue', 'one')
      await store.replaceCandidates('one', [])
      expect(await store.getCandidate('one', 'svc-0')).toBeUndefined()
      await store.replaceCandidates('one', [{ id: 'svc-0' }])
      const again = await move('svc-0', 'queue', 'one')
      expect(again.ok).toBe(true)
      if (again.ok) expect(again.run.attempt).toBeGreaterThan(Math.max(first.run.attempt, other.run.attempt))
    })
  })

  it(`answers a store whose schema was never migrated with unavailable, naming migrate (${db.name})`, async () => {
    const bare = postgresStore(await db.sql(), { schema: 'loom_never_migrated' })
    const error = await bare.listMigrations().catch((e: unknown) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect((error as Error).message).toContain('migrate()')
  })
})

describe('postgresStore arguments', () => {
  it('refuses a schema name that is not a plain identifier, naming the field', () => {
    const sql = postgres({ host: '127.0.0.1', port: 1 })
    for (const schema of ['', 'a.b', 'x"; drop', '1abc', 'a'.repeat(64)]) {
      const error = (() => {
        try {
          postgresStore(sql, { schema })
        } catch (e) {
          return e
        }
      })()
      expect(LoomError.is(error, 'invalid')).toBe(true)
      expect((error as LoomError).details).toEqual({ field: 'schema' })
    }
  })

  it('refuses a client with column transforms, whose rows it could not read', () => {
    const sql = postgres({ host: '127.0.0.1', port: 1, transform: postgres.camel })
    expect(() => postgresStore(sql)).toThrow(expect.objectContaining({ code: 'invalid', details: { field: 'sql' } }))
  })

  it('refuses a timeoutMs that is not a number of milliseconds, naming the field', () => {
    const sql = postgres({ host: '127.0.0.1', port: 1 })
    for (const timeoutMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, '5' as never]) {
      expect(() => postgresStore(sql, { timeoutMs })).toThrow(expect.objectContaining({ code: 'invalid', details: { field: 'timeoutMs' } }))
    }
  })

  it('refuses something that is not a postgres client', () => {
    expect(() => postgresStore({} as never)).toThrow(expect.objectContaining({ code: 'invalid', details: { field: 'sql' } }))
  })
})

describe('a database that cannot be reached', () => {
  it('fails every call with unavailable, never a crash', async () => {
    const port = await closedPort()
    const sql = postgres({ host: '127.0.0.1', port, connect_timeout: 2, onnotice: () => {} })
    const store = postgresStore(sql)
    try {
      const calls: Array<() => Promise<unknown>> = [
        () => store.ping(),
        () => store.listCandidates('app-chart'),
        () => store.transition({ migrationId: 'm', candidateId: 'c', action: 'queue', at: new Date().toISOString() }),
        () => store.upsertMigration(definition()),
        () => store.migrate(),
      ]
      for (const call of calls) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(LoomError.is(error, 'unavailable')).toBe(true)
        expect((error as LoomError).details).toMatchObject({ dependency: 'postgres', code: 'ECONNREFUSED' })
      }
    } finally {
      await sql.end({ timeout: 1 })
    }
  })
})

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('the activity log’s notification channel', () => {
  it('is `<schema>.activity` while that fits an identifier, and a stable short name past it', () => {
    expect(channelOf('loom')).toBe('loom.activity')
    const long = `s${'x'.repeat(62)}`
    const other = `t${'x'.repeat(62)}`
    expect(channelOf(long)).toMatch(/^loom\.activity\.[0-9a-f]{8}$/)
    expect(channelOf(long)).toBe(channelOf(long))
    expect(channelOf(long)).not.toBe(channelOf(other))
    expect(channelOf(`${'y'.repeat(54)}`).length).toBe(63)
  })
})
