/**
 * The activity log under real concurrency: writers on separate pools, whose transactions
 * commit in any order, and readers paging after a cursor while they do. PGlite runs one
 * transaction at a time, so only a PostgreSQL server can show that no entry is lost, doubled
 * or misplaced.
 */
import { createLoom, localEngine, type Actor, type CandidateStatus, type LoomEvent } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { STATUS_RULES, candidateStatusOf, type StatusAction, type TransitionResult } from '@loom/core/store'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { clientOptions, postgresStore, type PostgresStore } from '../src/index'
import { DATABASE_URL, NEEDS_SERVER, scratchStore, serverPool, sharedPool } from './databases'

type ActivityEntry = Awaited<ReturnType<PostgresStore['listActivity']>>[number]

const ACTORS: Actor[] = [
  { kind: 'operator', name: 'alice' },
  { kind: 'operator', name: 'bob' },
  { kind: 'worker', name: 'team-a' },
]
const ACTIONS = ['queue', 'dequeue', 'execute', 'cancel'] as const satisfies readonly StatusAction[]
const CANDIDATES = 50

describe.skipIf(!DATABASE_URL)(`the activity log under concurrent writers ${NEEDS_SERVER}`, () => {
  // One pool per actor, as three processes would have, and one for the reader.
  const pools = DATABASE_URL ? [...ACTORS, 'reader'].map(() => serverPool({ ...clientOptions, max: 6 })) : []
  let schema: string
  let close: () => Promise<void>
  let stores: PostgresStore[]
  let reader: PostgresStore

  beforeEach(async () => {
    ;({ schema, close } = await scratchStore(sharedPool()))
    stores = pools.slice(0, ACTORS.length).map((sql) => postgresStore(sql, { schema }))
    reader = postgresStore(pools[ACTORS.length]!, { schema })
    await stores[0]!.upsertMigration(
      { id: 'app-chart', name: 'App chart', steps: [{ name: 's', workerApp: 'w' }] },
      Array.from({ length: CANDIDATES }, (_, i) => ({ id: `svc-${i}` })),
    )
    await Promise.all([...stores, reader].map((store) => store.ping()))
  })
  afterEach(async () => close())

  /** Every entry of the migration, page by page from the start. */
  const readAll = async (store: PostgresStore, limit = 97) => {
    const entries: ActivityEntry[] = []
    for (;;) {
      const after = entries[entries.length - 1]?.id
      const page = await store.listActivity({ migrationId: 'app-chart', limit, ...(after ? { after } : {}) })
      entries.push(...page)
      if (page.length < limit) return entries
    }
  }

  it('after 1,000 random concurrent actions by three actors, has exactly one entry per change, by its actor, in each run’s order; a reader paging meanwhile saw the same log', {
    timeout: 120_000,
  }, async () => {
    const base = Date.parse('2026-03-01T00:00:00.000Z')
    const calls = Array.from({ length: 1000 }, (_, i) => ({
      candidateId: `svc-${Math.floor(Math.random() * CANDIDATES)}`,
      action: ACTIONS[Math.floor(Math.random() * ACTIONS.length)]!,
      actor: i % ACTORS.length,
      at: new Date(base + i).toISOString(), // a distinct time per call ties each entry to its call
    }))

    // A reader tails the log while the actions run: each page after the last id it saw.
    let writing = true
    const tailed: ActivityEntry[] = []
    const tail = (async () => {
      for (let reads = 0; ; reads++) {
        const last = tailed[tailed.length - 1]?.id
        const page = await reader.listActivity({ migrationId: 'app-chart', limit: 25, ...(last ? { after: last } : {}) })
        tailed.push(...page)
        if (!writing && page.length === 0) return reads
      }
    })()
    // Each actor works through its calls eight at a time: 24 in flight, on the same few candidates.
    const results: TransitionResult[] = new Array(calls.length)
    const queues = ACTORS.map((_, actor) => calls.flatMap((c, i) => (c.actor === actor ? [i] : [])))
    await Promise.all(
      queues.flatMap((queue, actor) =>
        Array.from({ length: 8 }, async () => {
          for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
            const c = calls[i]!
            results[i] = await stores[actor]!.transition({
              migrationId: 'app-chart',
              candidateId: c.candidateId,
              action: c.action,
              at: c.at,
              by: ACTORS[actor]!,
              ...(c.action === 'execute' ? { owner: 'p1' } : {}),
            })
          }
        }),
      ),
    )
    writing = false
    const reads = await tail

    const log = await readAll(reader)
    // The tail, read while transactions committed in any order, is the log as read afterwards:
    // nothing skipped, nothing twice, the same order.
    expect(tailed.map((e) => e.id)).toEqual(log.map((e) => e.id))
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length)

    // Exactly one entry per successful change, none for a refused one: each entry is its call's.
    const byAt = new Map(calls.map((c, i) => [c.at, { ...c, result: results[i]! }]))
    for (const entry of log) {
      const call = byAt.get(entry.at)
      expect(call, `entry ${entry.id} at ${entry.at}`).toBeDefined()
      expect(call!.result.ok, `the call of entry ${entry.id}`).toBe(true)
      expect([entry.type, entry.candidateId, entry.runId, entry.actor]).toEqual([
        `run.${call!.action}`,
        call!.candidateId,
        `app-chart__${call!.candidateId}`,
        ACTORS[call!.actor],
      ])
      if (call!.result.ok) expect(entry.attempt).toBe(call!.result.run.attempt)
    }
    const wins = calls.filter((_, i) => results[i]!.ok)
    expect(log).toHaveLength(wins.length)
    const perType = (types: string[]) => Object.fromEntries(ACTIONS.map((a) => [a, types.filter((t) => t === a).length]))
    expect(perType(log.map((e) => e.type.slice('run.'.length)))).toEqual(perType(wins.map((w) => w.action)))
    expect(results.filter((r) => !r.ok && r.reason === 'conflict').length).toBe(calls.length - wins.length)

    // Per candidate, the entries in log order replay the status rules from not_started to the
    // status it has, each from the status the call that made it found.
    const page = (await reader.listCandidates('app-chart'))!
    for (const { id, status } of page.candidates) {
      let current: CandidateStatus = 'not_started'
      for (const entry of log.filter((e) => e.candidateId === id)) {
        const call = byAt.get(entry.at)!
        const rule = STATUS_RULES[call.action]
        expect(rule.from as readonly CandidateStatus[], `${id}: ${call.action} from ${current}`).toContain(current)
        expect(call.result.ok && call.result.previous, `${id}: ${call.action}`).toBe(current)
        current = candidateStatusOf(rule.to)
      }
      expect(current, id).toBe(status)
    }
    // The same entries per candidate, through the candidate's index.
    const svc = log.find((e) => e.candidateId !== undefined)!.candidateId!
    const ofSvc = await reader.listActivity({ migrationId: 'app-chart', candidateId: svc, limit: 1000 })
    expect(ofSvc.map((e) => e.id)).toEqual(log.filter((e) => e.candidateId === svc).map((e) => e.id))

    expect(wins.length).toBeGreaterThan(200)
    console.info(
      `activity: ${wins.length} of 1000 concurrent actions applied (${perType(wins.map((w) => w.action)).queue} queue, ` +
        `${perType(wins.map((w) => w.action)).execute} execute), ${log.length} entries; the tail read them in ${reads} pages`,
    )
  })

  it('holds back an entry that committed behind an older transaction still running, and gives it after that one, not skipping it', async () => {
    const at = () => new Date().toISOString()
    const slow = await pools[0]!.reserve()
    try {
      // A slow writer: its transaction has its id (so its entry's) before the fast one starts.
      await slow`begin`
      await slow.unsafe(
        `insert into "${schema}".activity (at, migration_id, candidate_id, type, actor_kind, actor_name, detail)
         values (now(), 'app-chart', 'svc-1', 'step.reported', 'worker', 'slow', '{}')`,
      )
      expect((await stores[1]!.transition({ migrationId: 'app-chart', candidateId: 'svc-0', action: 'queue', at: at() })).ok).toBe(true)

      // The queue has committed, but a read cannot know whether the older transaction will write
      // an entry before it: it waits a little, then answers without it.
      const started = performance.now()
      expect(await reader.listActivity({ migrationId: 'app-chart', limit: 10 })).toEqual([])
      const waited = performance.now() - started
      expect(waited).toBeGreaterThan(200)
      expect(waited).toBeLessThan(2000)
      // A candidate's log waits for the same horizon.
      expect(await reader.listActivity({ migrationId: 'app-chart', candidateId: 'svc-0', limit: 10 })).toEqual([])

      await slow`commit`
      const entries = await reader.listActivity({ migrationId: 'app-chart', limit: 10 })
      expect(entries.map((e) => [e.type, e.actor.name])).toEqual([
        ['step.reported', 'slow'],
        ['run.queue', 'loom'],
      ])
    } finally {
      await slow`rollback`.catch(() => {})
      slow.release()
    }
  })

  it('lets a writer read its own change next', async () => {
    for (let i = 0; i < 20; i++) {
      const store = stores[i % stores.length]!
      const action = i % 2 === 0 ? 'queue' : 'dequeue'
      expect((await store.transition({ migrationId: 'app-chart', candidateId: 'svc-0', action, at: new Date().toISOString() })).ok).toBe(
        true,
      )
      const [last] = (await store.listActivity({ migrationId: 'app-chart', candidateId: 'svc-0', limit: 100 })).slice(-1)
      expect(last!.type).toBe(`run.${action}`)
    }
  })

  it('wakes a Loom in another process by notification: its subscribers see every change once, in order, and it reads nothing while idle', {
    timeout: 60_000,
  }, async () => {
    // Process B: a Loom over its own pool, counting its reads of the log.
    let reads = 0
    const counted: PostgresStore = Object.create(reader)
    counted.listActivity = (query) => {
      reads++
      return reader.listActivity(query)
    }
    const loom = createLoom({ store: counted, engine: localEngine(), reconcile: false })
    const seen: LoomEvent[] = []
    try {
      await new Promise<void>((resolve) => loom.subscribe((event) => seen.push(event), { onReady: resolve }))
      // Idle: no change anywhere, no read (no polling). The LISTEN coming up wakes it once, first.
      await new Promise((resolve) => setTimeout(resolve, 500))
      const idle = reads
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      expect(reads).toBe(idle)
      // Process A (and C): changes through their own pools.
      const started = Date.now()
      const moved: string[] = []
      for (let i = 0; i < 30; i++) {
        const store = stores[i % stores.length]!
        const candidateId = `svc-${i % 10}`
        const action = i < 10 ? 'queue' : i < 20 ? 'dequeue' : 'queue'
        const result = await store.transition({
          migrationId: 'app-chart',
          candidateId,
          action,
          at: new Date().toISOString(),
          by: ACTORS[i % 3],
        })
        expect(result.ok).toBe(true)
        moved.push(`${candidateId}:${action}`)
      }
      await eventually(() => expect(seen).toHaveLength(30), { timeoutMs: 5_000 })
      const latency = Date.now() - started
      expect(
        seen.map((e) => (e.type === 'run.status' ? `${e.candidateId}:${e.status === 'queued' ? 'queue' : 'dequeue'}` : e.type)),
      ).toEqual(moved)
      expect(seen.map((e) => e.actor?.name)).toEqual(moved.map((_, i) => ACTORS[i % 3]!.name))
      expect(new Set(seen.map((e) => e.id)).size).toBe(30)
      expect(latency).toBeLessThan(5_000)
      // Quiet again: a second idle stretch reads nothing either.
      const after = reads
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      expect(reads).toBe(after)
    } finally {
      await loom.close()
    }
  })

  it('goes on waking a subscribed Loom after its listening connection is killed', { timeout: 60_000 }, async () => {
    const loom = createLoom({ store: reader, engine: localEngine(), reconcile: false })
    const seen: LoomEvent[] = []
    try {
      await new Promise<void>((resolve) => loom.subscribe((event) => seen.push(event), { onReady: resolve }))
      const admin = sharedPool()
      const listeners = async () =>
        admin<{ pid: number }[]>`select pid from pg_stat_activity where query ilike ${`listen "${schema}.activity"%`}`
      await eventually(async () => expect(await listeners()).toHaveLength(1), { timeoutMs: 5_000 })
      const pid = (await listeners())[0]!.pid
      await admin`select pg_terminate_backend(${pid}::int)`
      // Listening again (a new backend), the next change from another pool reaches the subscriber.
      await eventually(async () => expect((await listeners()).map((l) => l.pid)).not.toEqual([pid]), { timeoutMs: 10_000 })
      await eventually(async () => expect(await listeners()).toHaveLength(1), { timeoutMs: 10_000 })
      const moved = await stores[0]!.transition({
        migrationId: 'app-chart',
        candidateId: 'svc-0',
        action: 'queue',
        at: new Date().toISOString(),
      })
      expect(moved.ok).toBe(true)
      await eventually(() => expect(seen.map((e) => e.type)).toEqual(['run.status']), { timeoutMs: 5_000 })
    } finally {
      await loom.close()
    }
  })
})
