/**
 * The compare-and-set behind every run write: a transition, a step report or a step moving
 * on reads the run with its row version and writes only while the version is still the one
 * read. Each test here makes two stores, on two pools as two processes would be, read the
 * same version before either writes: a third connection holds the run's row lock until both
 * writes are waiting on it, so the race is certain rather than likely. Without the version
 * condition both writes would apply; with it the second finds the row changed, reads again
 * and answers what the first left. PGlite runs one statement at a time, so only a PostgreSQL
 * server can hold the two writes at the lock.
 */
import type { Actor } from '@loom/core'
import { eventually } from '@loom/core/testing'
import type { StatusAction } from '@loom/core/store'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { clientOptions, postgresStore, type PostgresStore } from '../src/index'
import { DATABASE_URL, NEEDS_SERVER, scratchStore, serverPool, sharedPool } from './databases'

const M = 'app-chart'
const alice: Actor = { kind: 'operator', name: 'alice' }
const teamA: Actor = { kind: 'worker', name: 'team-a' }

describe.skipIf(!DATABASE_URL)(`compare-and-set of run writes ${NEEDS_SERVER}`, () => {
  // Named, so that the writers waiting on the lock can be counted in pg_stat_activity.
  const appName = `loom-cas-${Math.random().toString(36).slice(2, 8)}`
  const pools = DATABASE_URL ? [1, 2].map(() => serverPool({ ...clientOptions, max: 2, connection: { application_name: appName } })) : []
  let schema: string
  let close: () => Promise<void>
  let a: PostgresStore
  let b: PostgresStore

  beforeEach(async () => {
    ;({ schema, close } = await scratchStore(sharedPool()))
    ;[a, b] = pools.map((sql) => postgresStore(sql, { schema })) as [PostgresStore, PostgresStore]
    await a.upsertMigration({ id: M, name: 'App chart', steps: [{ name: 'update-chart', workerApp: 'charts' }] }, [{ id: 'svc-0' }])
  })
  afterEach(async () => close())

  const at = () => new Date().toISOString()
  const move = (store: PostgresStore, action: StatusAction, by: Actor = alice) =>
    store.transition({ migrationId: M, candidateId: 'svc-0', action, at: at(), by, ...(action === 'execute' ? { owner: 'p1' } : {}) })
  const runOf = async () => (await a.getCandidate(M, 'svc-0'))!.run!
  const log = async () => (await a.listActivity({ migrationId: M, candidateId: 'svc-0', limit: 100 })).map((e) => e.type)

  /** How many of the two stores' connections wait on a lock. */
  const waiting = async () => {
    const [row] = await sharedPool()`
      select count(*)::int as waiting from pg_stat_activity where application_name = ${appName} and wait_event_type = 'Lock'
    `
    return row!.waiting as number
  }

  /**
   * Runs two writes that both read svc-0's run before either writes it: another connection
   * holds the run's row locked while `first`, then `second`, read it and queue on the lock
   * to write, and lets them go once both wait. PostgreSQL grants a row's lock to its waiters
   * in turn, so `first` writes first and `second` writes over a row that changed since its read.
   */
  const race = async <A, B>(first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B]> => {
    const holder = await sharedPool().reserve()
    try {
      await holder`begin`
      await holder.unsafe(`select 1 from "${schema}".runs where migration_id = $1 and candidate_id = $2 for update`, [M, 'svc-0'])
      const one = first()
      // Kept from going unhandled while the second is set up; it is awaited below.
      one.catch(() => {})
      await eventually(async () => expect(await waiting()).toBe(1), { timeoutMs: 4_000, intervalMs: 5 })
      const two = second()
      two.catch(() => {})
      await eventually(async () => expect(await waiting()).toBe(2), { timeoutMs: 4_000, intervalMs: 5 })
      await holder`commit`
      return await Promise.all([one, two])
    } finally {
      holder.release()
    }
  }

  it('of an execute and a dequeue that read the same queued run, only the first applies, and the second leaves no trace', async () => {
    expect((await move(a, 'queue')).ok).toBe(true)
    const queued = await runOf()
    const [executed, dequeued] = await race(
      () => move(a, 'execute'),
      () => move(b, 'dequeue', teamA),
    )
    expect(executed).toMatchObject({ ok: true, previous: 'queued', run: { state: 'running', attempt: queued.attempt } })
    expect(dequeued).toEqual({ ok: false, reason: 'conflict', status: 'running', attempt: queued.attempt })
    const run = await runOf()
    expect(run).toMatchObject({ state: 'running', attempt: queued.attempt, owner: 'p1' })
    expect(run.lastAttempt).toBeUndefined()
    expect(await log()).toEqual(['run.queue', 'run.execute'])
  })

  it('of a cancel and a fail that read the same running run, only the cancel applies: one audit record, the cancel as the last attempt', async () => {
    expect((await move(a, 'queue')).ok).toBe(true)
    expect((await move(a, 'execute')).ok).toBe(true)
    const running = await runOf()
    const [cancelled, failed] = await race(
      () => a.transition({ migrationId: M, candidateId: 'svc-0', action: 'cancel', at: at(), by: alice, reason: 'freeze' }),
      () => move(b, 'fail', teamA),
    )
    expect(cancelled).toMatchObject({ ok: true, previous: 'running' })
    expect(failed).toEqual({ ok: false, reason: 'conflict', status: 'not_started', attempt: running.attempt })
    const run = await runOf()
    expect(run).toMatchObject({ state: 'cancelled', attempt: running.attempt })
    expect(run.lastAttempt).toMatchObject({ outcome: 'cancelled', by: alice, reason: 'freeze' })
    expect((await a.getMigration(M))!.cancelledAttempts.map((c) => [c.attempt, c.reason])).toEqual([[running.attempt, 'freeze']])
    expect(await log()).toEqual(['run.queue', 'run.execute', 'run.cancel'])
  })

  it('of two different final reports of one step that read the same run, the first is recorded, the second refused, and the step stays the first', async () => {
    expect((await move(a, 'queue')).ok).toBe(true)
    expect((await move(a, 'execute')).ok).toBe(true)
    const report = (store: PostgresStore, success: boolean) =>
      store.recordStep({
        migrationId: M,
        candidateId: 'svc-0',
        result: { stepName: 'update-chart', candidate: { id: 'svc-0' }, success, metadata: { prUrl: success ? 'u1' : 'u2' } },
        done: true,
        at: at(),
        by: teamA,
      })
    const [succeeded, failed] = await race(
      () => report(a, true),
      () => report(b, false),
    )
    expect(succeeded.outcome).toBe('recorded')
    expect(failed.outcome).toBe('step_ended')
    expect((await runOf()).steps.map((s) => [s.result.stepName, s.done, s.result.success, s.result.metadata])).toEqual([
      ['update-chart', true, true, { prUrl: 'u1' }],
    ])
    const reported = (await a.listActivity({ migrationId: M, candidateId: 'svc-0', limit: 100 })).filter((e) => e.type === 'step.reported')
    expect(reported.map((e) => e.detail)).toEqual([{ stepName: 'update-chart', success: true, done: true, prUrl: 'u1' }])
  })

  const dispatches = async () =>
    (await a.listActivity({ migrationId: M, candidateId: 'svc-0', limit: 100 })).filter((e) => e.type === 'step.dispatched')
  const mark = (store: PostgresStore, attempt: number, phase: 'begun' | 'dispatched', when: string) =>
    store.markStep({ migrationId: M, candidateId: 'svc-0', attempt, index: 0, phase, at: when })

  it('of two acceptances of one dispatch that read the same run, the first is kept and logged once', async () => {
    expect((await move(a, 'queue')).ok).toBe(true)
    expect((await move(a, 'execute')).ok).toBe(true)
    const { attempt } = await runOf()
    expect(await mark(a, attempt, 'begun', '2026-01-01T00:00:00.000Z')).toBe(true)
    const [first, repeat] = await race(
      () => mark(a, attempt, 'dispatched', '2026-01-01T00:01:00.000Z'),
      () => mark(b, attempt, 'dispatched', '2026-01-01T00:02:00.000Z'),
    )
    // Both accepted (a repeat of the step in flight is no error), but only the first counts.
    expect([first, repeat]).toEqual([true, true])
    expect((await runOf()).stepDispatchedAt).toBe('2026-01-01T00:01:00.000Z')
    expect((await dispatches()).map((e) => [e.at, e.attempt])).toEqual([['2026-01-01T00:01:00.000Z', attempt]])
  })

  it('of a cancel and a dispatch accepted that read the same running run, the cancel applies and the acceptance marks and logs nothing', async () => {
    expect((await move(a, 'queue')).ok).toBe(true)
    expect((await move(a, 'execute')).ok).toBe(true)
    const { attempt } = await runOf()
    expect(await mark(a, attempt, 'begun', '2026-01-01T00:00:00.000Z')).toBe(true)
    const [cancelled, accepted] = await race(
      () => move(a, 'cancel'),
      () => mark(b, attempt, 'dispatched', '2026-01-01T00:01:00.000Z'),
    )
    expect(cancelled.ok).toBe(true)
    expect(accepted).toBe(false)
    const run = await runOf()
    expect(run).toMatchObject({ state: 'cancelled', attempt })
    expect([run.stepStartedAt, run.stepDispatchedAt]).toEqual([undefined, undefined])
    expect(await dispatches()).toEqual([])
    expect(await log()).toEqual(['run.queue', 'run.execute', 'run.cancel'])
  })
})
