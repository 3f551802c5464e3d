import { describe, expect, it } from 'vitest'
import { LoomError } from '../errors'
import { localEngine } from '../local-engine'
import { memoryStore } from '../memory-store'
import type { Engine, MigrationStore, StepDispatcher } from '../ports'
import { announcement, eventually, expectLoomError, fakeWorker } from '../testing/fakes'
import { createLoom } from './index'

const M = 'app-chart'
const RUN = 'app-chart__billing-api'
const done = (stepName: string, success = true) => ({ stepName, candidate: { id: 'billing-api' }, success })
const reconcile = { intervalMs: 50, leaseMs: 1_000, stallMs: 200 }
const unavailable = () => new LoomError('unavailable', 'store: connection refused')

/** A store whose every method fails `unavailable` while `down` is set. */
function flakyStore(store: MigrationStore): MigrationStore & { down: boolean } {
  const flaky = { down: false } as MigrationStore & { down: boolean }
  for (const key of Object.keys(store) as (keyof MigrationStore)[]) {
    const method = store[key] as (...args: unknown[]) => Promise<unknown>
    ;(flaky as unknown as Record<string, unknown>)[key] = (...args: unknown[]) =>
      flaky.down ? Promise.reject(unavailable()) : method.apply(store, args)
  }
  return flaky
}

describe('the reconciler', () => {
  it('answers a stored report although the engine cannot be told, and delivers it once the engine is back', async () => {
    const worker = fakeWorker()
    const engine = localEngine()
    let deliverable = false
    const deaf: Engine = {
      ...engine,
      deliver: (runId, event) => (deliverable ? engine.deliver(runId, event) : Promise.reject(new Error('engine: connection refused'))),
    }
    const errors: unknown[] = []
    const loom = createLoom({
      store: memoryStore(),
      engine: deaf,
      dispatcher: worker.dispatcher,
      reconcile,
      onError: (e) => errors.push(e),
    })
    await loom.announce(announcement(M, { steps: ['update-chart', 'merge'], candidates: [{ id: 'billing-api' }] }))
    await loom.execute(await loom.queue(M, 'billing-api'))
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart']))
    // Stored, so accepted: answering 503 would say that nothing changed.
    await expect(loom.complete(RUN, done('update-chart'))).resolves.toBeUndefined()
    expect((await loom.getRun(RUN)).steps?.map((s) => [s.stepName, s.success])).toEqual([['update-chart', true]])
    expect(errors.some((e) => LoomError.is(e, 'unavailable') && /stored but not delivered/.test(e.message))).toBe(true)
    await new Promise((r) => setTimeout(r, 200))
    expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
    deliverable = true
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'merge']), { timeoutMs: 2_000 })
    await loom.complete(RUN, done('merge'))
    await eventually(async () => expect((await loom.getRun(RUN)).status).toBe('completed'))
    await loom.close()
  })

  it('keeps a run loop alive through a store outage: its operations are tried again until the store is back', async () => {
    const worker = fakeWorker()
    const store = flakyStore(memoryStore())
    const errors: unknown[] = []
    const engine = localEngine({ maxStoreRetryDelayMs: 50, onError: (e) => errors.push(e) })
    const loom = createLoom({ store, engine, dispatcher: worker.dispatcher, reconcile: false, onError: () => {} })
    await loom.announce(announcement(M, { steps: ['update-chart', 'merge'], candidates: [{ id: 'billing-api' }] }))
    const runId = await loom.queue(M, 'billing-api')
    store.down = true
    await expectLoomError(loom.execute(runId), 'unavailable')
    store.down = false
    await loom.execute(runId)
    // Down before the loop's first read: it cannot load the run, begin the step or dispatch.
    store.down = true
    await new Promise((r) => setTimeout(r, 400))
    expect(worker.stepsOf(RUN)).toEqual([])
    expect(errors.length).toBeGreaterThan(0)
    store.down = false
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart']), { timeoutMs: 2_000 })
    // Down again while the step is in flight: the report is refused (nothing stored), the worker retries it.
    store.down = true
    await expectLoomError(loom.complete(RUN, done('update-chart')), 'unavailable')
    store.down = false
    await loom.complete(RUN, done('update-chart'))
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'merge']))
    await loom.complete(RUN, done('merge'))
    await eventually(async () => expect((await loom.getRun(RUN)).status).toBe('completed'))
    expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'merge'])
    await loom.close()
  })

  it('fails a worker step past its deadline, but leaves a manual review waiting for its operator however long it takes', async () => {
    const worker = fakeWorker()
    let clock = Date.parse('2026-03-01T00:00:00.000Z')
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine(),
      dispatcher: worker.dispatcher,
      now: () => new Date(clock),
      stepTimeout: '1h',
      reconcile,
    })
    try {
      await loom.announce(announcement(M, { steps: ['review', 'update-chart'], manual: ['review'], candidates: [{ id: 'billing-api' }] }))
      await loom.execute(await loom.queue(M, 'billing-api'))
      await eventually(async () => expect((await loom.getRun(RUN)).steps?.[0]?.metadata?.phase).toBe('awaiting_review'))
      clock += 48 * 3600_000
      // Several passes of the reconciler, two days past the deadline.
      await new Promise((resolve) => setTimeout(resolve, reconcile.intervalMs * 6))
      expect((await loom.getRun(RUN)).status).toBe('running')
      expect((await loom.getRun(RUN)).steps?.[0]?.metadata?.phase).toBe('awaiting_review')
      // The worker step after it does have a deadline.
      await loom.complete(RUN, done('review'))
      await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart']))
      clock += 2 * 3600_000
      await eventually(async () => expect((await loom.getCandidate(M, 'billing-api')).lastAttempt).toMatchObject({ step: 'update-chart' }))
    } finally {
      await loom.close()
    }
  })

  it('ends, with the reason, a run its engine refuses to resume', async () => {
    const store = memoryStore()
    const worker = fakeWorker()
    await store.upsertMigration(
      { id: M, name: 'App chart', steps: [{ name: 'update-chart', workerApp: 'charts' }], workerUrl: 'http://127.0.0.1:9' },
      [{ id: 'billing-api' }],
    )
    const at = new Date().toISOString()
    await store.transition({ migrationId: M, candidateId: 'billing-api', action: 'queue', at })
    await store.transition({ migrationId: M, candidateId: 'billing-api', action: 'execute', at, owner: 'a-process-that-is-gone' })
    const engine: Engine = {
      ...localEngine(),
      resume: () => Promise.reject(new LoomError('invalid', 'the workflow type loomRun is not registered')),
    }
    const loom = createLoom({ store, engine, dispatcher: worker.dispatcher, reconcile, onError: () => {} })
    await loom.ready
    await eventually(async () => expect((await loom.getCandidate(M, 'billing-api')).status).toBe('not_started'))
    const status = await loom.runStatus(RUN)
    expect(status.runtimeStatus).toBe('FAILED')
    expect(status.result.results[0]?.metadata?.error).toBe('the run could not be resumed: the workflow type loomRun is not registered')
    await loom.close()
  })

  it('bounds the dispatches in flight, and dispatches each step once', async () => {
    const worker = fakeWorker()
    let inFlight = 0
    let most = 0
    const slow: StepDispatcher = {
      async dispatch(target, request) {
        most = Math.max(most, ++inFlight)
        await new Promise((r) => setTimeout(r, 30))
        inFlight--
        await worker.dispatcher.dispatch(target, request)
      },
    }
    const loom = createLoom({ store: memoryStore(), engine: localEngine({ maxDispatches: 3 }), dispatcher: slow, reconcile: false })
    const ids = Array.from({ length: 12 }, (_, i) => `svc-${i}`)
    await loom.announce(announcement(M, { steps: ['update-chart'], candidates: ids.map((id) => ({ id })) }))
    await Promise.all(ids.map(async (id) => loom.execute(await loom.queue(M, id))))
    await eventually(() => expect(worker.dispatched).toHaveLength(12), { timeoutMs: 3_000 })
    expect(most).toBe(3)
    expect(new Set(worker.dispatched.map((d) => d.request.runId)).size).toBe(12)
    await loom.close()
  })
})
