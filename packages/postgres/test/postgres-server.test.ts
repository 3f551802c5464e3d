/**
 * What only a PostgreSQL server can show: real lock contention between connections of
 * different pools, and connections killed under the store. PGlite runs one transaction at a
 * time, so there these races cannot happen at all.
 */
import { LoomError, type CandidateStatus } from '@loom/core'
import { STATUS_RULES, candidateStatusOf, type StatusAction, type TransitionResult } from '@loom/core/store'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { postgresStore, type PostgresStore } from '../src/index'
import { DATABASE_URL, NEEDS_SERVER, scratchStore, serverPool, sharedPool } from './databases'

const STATUSES: CandidateStatus[] = ['not_started', 'queued', 'running', 'completed']
const ACTIONS = Object.keys(STATUS_RULES) as StatusAction[]

describe.skipIf(!DATABASE_URL)(`postgresStore under contention ${NEEDS_SERVER}`, () => {
  const appName = `loom-test-${Math.random().toString(36).slice(2, 8)}`
  // fetch_types: false because postgres.js (3.4.9) loses the rejection of the array-type query
  // it runs on connect when that connection is terminated, and the pool then hangs; the
  // store sends no array parameters, so it needs no array types.
  const options = { max: 10, fetch_types: false, connection: { application_name: appName } }
  const one = DATABASE_URL ? serverPool(options) : undefined
  const two = DATABASE_URL ? serverPool(options) : undefined
  let schema: string
  let close: () => Promise<void>
  let a: PostgresStore
  let b: PostgresStore

  beforeEach(async () => {
    ;({ schema, close } = await scratchStore(sharedPool()))
    // A short deadline: the driver can strand a query when its connection is killed (see the last test).
    a = postgresStore(one!, { schema, timeoutMs: 5000 })
    b = postgresStore(two!, { schema, timeoutMs: 5000 })
  })
  afterEach(async () => close())

  const ids = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `svc-${i}` }))
  const seed = (n: number) => a.upsertMigration({ id: 'app-chart', name: 'App chart', steps: [{ name: 's', workerApp: 'w' }] }, ids(n))
  const request = (candidateId: string, action: StatusAction, at = new Date().toISOString()) => ({
    migrationId: 'app-chart',
    candidateId,
    action,
    at,
  })

  /** The cancelled-attempt rows, straight from the table. */
  const auditRows = async () =>
    (await sharedPool().unsafe(
      `select candidate_id, attempt::float8 as attempt, (extract(epoch from cancelled_at) * 1000)::float8 as at from "${schema}".cancelled_attempts`,
    )) as unknown as Array<{ candidate_id: string; attempt: number; at: number }>

  it('of 200 concurrent queue calls for one candidate from two pools exactly one succeeds', async () => {
    await seed(1)
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).transition(request('svc-0', 'queue'))))
    expect(results.filter((r) => r.ok)).toHaveLength(1)
    expect(results.filter((r) => !r.ok && r.reason === 'conflict' && r.status === 'queued')).toHaveLength(199)
    const run = (await a.getCandidate('app-chart', 'svc-0'))!.run!
    expect(run.state).toBe('queued')
    expect(run.attempt).toBe((results.find((r) => r.ok) as Extract<TransitionResult, { ok: true }>).run.attempt)
  })

  it('after 1,000 random concurrent transitions over 100 candidates, statuses are what the winners imply and every cancel has its audit record', async () => {
    await seed(100)
    const base = Date.parse('2026-01-01T00:00:00.000Z')
    const calls = Array.from({ length: 1000 }, (_, i) => ({
      candidateId: `svc-${Math.floor(Math.random() * 100)}`,
      action: ACTIONS[Math.floor(Math.random() * ACTIONS.length)]!,
      at: base + i, // a distinct timestamp per call ties each audit record to its call
    }))
    const results = await Promise.all(
      calls.map((c, i) => (i % 2 ? a : b).transition(request(c.candidateId, c.action, new Date(c.at).toISOString()))),
    )
    const page = (await a.listCandidates('app-chart'))!
    const audit = await auditRows()

    for (const { id } of page.candidates) {
      const won = calls.map((c, i) => ({ ...c, result: results[i]! })).filter((c) => c.candidateId === id && c.result.ok)
      // Each win leaves its `previous` status and enters the rule's; along one path from
      // not_started every status is entered as often as it is left, except the start and the end.
      const balance = new Map<CandidateStatus, number>(STATUSES.map((s) => [s, s === 'not_started' ? 1 : 0]))
      for (const w of won) {
        if (!w.result.ok) continue
        const to = candidateStatusOf(STATUS_RULES[w.action].to)
        balance.set(w.result.previous, balance.get(w.result.previous)! - 1)
        balance.set(to, balance.get(to)! + 1)
      }
      const implied = [...balance].filter(([, n]) => n !== 0)
      const status = page.candidates.find((c) => c.id === id)!.status
      expect(implied, `candidate ${id}`).toEqual([[status, 1]])

      const cancels = won.filter((w) => w.action === 'cancel').map((w) => [w.result.ok ? w.result.run.attempt : -1, w.at])
      const recorded = audit.filter((r) => r.candidate_id === id).map((r) => [r.attempt, r.at])
      expect(sortPairs(recorded), `audit of ${id}`).toEqual(sortPairs(cancels))
    }
    expect(results.filter((r) => r.ok).length).toBeGreaterThan(30)
  })

  it('never lets a delete race an execute: either the migration is deleted or the candidate runs', async () => {
    for (let round = 0; round < 20; round++) {
      await seed(1)
      expect((await a.transition(request('svc-0', 'queue'))).ok).toBe(true)
      const [deleted, executed] = await Promise.all([b.deleteMigration('app-chart'), a.transition(request('svc-0', 'execute'))])
      if (deleted === 'deleted') {
        expect(executed).toEqual({ ok: false, reason: 'not_found' })
        expect(await a.getMigration('app-chart')).toBeUndefined()
      } else {
        expect(deleted).toBe('running')
        expect(executed.ok).toBe(true)
        expect((await a.listCandidates('app-chart'))!.candidates[0]!.status).toBe('running')
        await a.transition(request('svc-0', 'cancel'))
        expect(await a.deleteMigration('app-chart')).toBe('deleted')
      }
    }
  })

  it('never drops a candidate that a concurrent queue reserved', async () => {
    for (let round = 0; round < 20; round++) {
      await seed(2)
      const [, queued] = await Promise.all([b.replaceCandidates('app-chart', [{ id: 'svc-1' }]), a.transition(request('svc-0', 'queue'))])
      const list = (await a.listCandidates('app-chart'))!.candidates.map((c) => [c.id, c.status])
      if (queued.ok)
        expect(list).toEqual([
          ['svc-1', 'not_started'],
          ['svc-0', 'queued'],
        ])
      else expect([queued, list]).toEqual([{ ok: false, reason: 'not_found' }, [['svc-1', 'not_started']]])
      await a.transition(request('svc-0', 'dequeue'))
      expect(await a.deleteMigration('app-chart')).toBe('deleted')
    }
  })

  it('after pg_terminate_backend on its connections, calls succeed on new ones or fail with unavailable, and no transition is half-applied', {
    timeout: 120_000,
  }, async () => {
    await seed(50)
    const terminate = async () => {
      const rows = await sharedPool()`
        select pg_terminate_backend(pid) as killed from pg_stat_activity
        where application_name = ${appName} and pid <> pg_backend_pid()
      `
      return rows.filter((r) => r.killed).length
    }
    const settle = async <T>(call: () => Promise<T>) => {
      try {
        return { value: await call() }
      } catch (error) {
        expect(LoomError.is(error, 'unavailable'), String(error)).toBe(true)
        return { error: error as LoomError }
      }
    }

    // Idle connections killed: the next call fails with unavailable or reconnects; soon one reconnects.
    await Promise.all([a.ping(), b.ping(), a.listCandidates('app-chart')])
    expect(await terminate()).toBeGreaterThan(0)
    await settle(() => a.transition(request('svc-0', 'queue')))
    let healthy = false
    for (let i = 0; i < 8 && !healthy; i++) healthy = 'value' in (await settle(() => a.ping()))
    expect(healthy).toBe(true)

    // Connections killed mid-transaction, three times over.
    const base = Date.parse('2026-02-01T00:00:00.000Z')
    const calls: Array<{ candidateId: string; action: StatusAction; at: number }> = []
    const outcomes: Array<{ value?: TransitionResult; error?: LoomError }> = []
    let killed = 0
    for (let round = 0; round < 3; round++) {
      const batch = Array.from({ length: 300 }, (_, i) => ({
        candidateId: `svc-${Math.floor(Math.random() * 50)}`,
        action: (['queue', 'execute', 'cancel', 'cancel', 'dequeue'] as const)[i % 5]!,
        at: base + calls.length + i,
      }))
      calls.push(...batch)
      const pending = Promise.all(
        batch.map((c, i) => settle(() => (i % 2 ? a : b).transition(request(c.candidateId, c.action, new Date(c.at).toISOString())))),
      )
      await new Promise((r) => setTimeout(r, 15))
      killed += await terminate()
      outcomes.push(...(await pending))
    }

    // Runs before audit: a stranded cancel that lands late then has its record in what is read next.
    const runs = await a.listRuns('cancelled')
    const audit = await auditRows()
    const byAt = new Map(calls.map((c, i) => [c.at, { ...c, outcome: outcomes[i]! }]))
    // Every audit record belongs to a cancel that succeeded, or whose answer was lost with its connection.
    for (const row of audit.filter((r) => r.at >= base)) {
      const call = byAt.get(row.at)
      expect(call?.action).toBe('cancel')
      expect(call!.outcome.error !== undefined || call!.outcome.value?.ok === true).toBe(true)
    }
    // Every cancel that succeeded has its audit record.
    const recorded = new Set(audit.map((r) => r.at))
    for (const c of byAt.values()) if (c.action === 'cancel' && c.outcome.value?.ok) expect(recorded.has(c.at)).toBe(true)
    // Every run left cancelled has the audit record of its attempt.
    for (const run of runs) expect(audit.some((r) => r.candidate_id === run.candidateId && r.attempt === run.attempt)).toBe(true)
    // And the store serves again.
    let served = false
    for (let i = 0; i < 8 && !served; i++) served = 'value' in (await settle(() => b.listCandidates('app-chart')))
    expect(served).toBe(true)
    expect(killed).toBeGreaterThan(0)
    expect(outcomes.filter((o) => o.value).length).toBeGreaterThan(0)
    console.info(
      `pg_terminate_backend: ${killed} connections killed mid-flight; ${outcomes.filter((o) => o.error).length} of ${outcomes.length} calls answered unavailable (${outcomes.filter((o) => o.error?.details?.code === 'TIMEOUT').length} of them stranded by the driver until the deadline)`,
    )
  })
})

function sortPairs(pairs: number[][]): number[][] {
  return [...pairs].sort((x, y) => x[0]! - y[0]! || x[1]! - y[1]!)
}
