import { ApplicationFailure } from '@temporalio/common'
import { describe, expect, it } from 'vitest'
import { LoomError, memoryStore, type MigrationStore } from '@loom/core'
import type { RunStart, StepDispatcher } from '@loom/core/engine'
import { createActivities } from './activities'
import { loomWorkflowsPath } from './worker'

const M = 'app-chart'
const RUN: RunStart = { runId: 'app-chart__billing-api', migrationId: M, candidateId: 'billing-api', attempt: 1 }
const at = () => new Date().toISOString()

async function runningStore(): Promise<MigrationStore> {
  const store = memoryStore()
  await store.upsertMigration(
    {
      id: M,
      name: 'App chart',
      steps: [
        { name: 'bump-chart', workerApp: 'charts' },
        { name: 'review', workerApp: 'console', config: { type: 'manual-review' } },
      ],
    },
    [{ id: 'billing-api' }],
  )
  await store.transition({ migrationId: M, candidateId: 'billing-api', action: 'queue', at: at() })
  await store.transition({ migrationId: M, candidateId: 'billing-api', action: 'execute', at: at() })
  return store
}

const accepting: StepDispatcher = { dispatch: async () => {} }

/** `store` with `method` failing its next `times` calls once armed, as a store that lost its connection. */
function failing(store: MigrationStore, method: keyof MigrationStore, times: number) {
  let armed = false
  let failures = 0
  const wrapped = new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (key !== method || typeof value !== 'function') return value
      return (...args: unknown[]) => {
        if (armed && failures < times) {
          failures++
          return Promise.reject(new Error('connection reset'))
        }
        return value.apply(target, args)
      }
    },
  })
  return { store: wrapped, arm: () => void (armed = true), failures: () => failures }
}

describe('createActivities', () => {
  it('loads the plan of a running attempt: steps, which ones wait for review, outcomes already reported', async () => {
    const store = await runningStore()
    await store.recordStep({
      migrationId: M,
      candidateId: 'billing-api',
      result: { stepName: 'bump-chart', candidate: { id: 'billing-api' }, success: true },
      done: true,
      at: at(),
    })
    const activities = createActivities({ store, dispatcher: accepting })
    expect(await activities.load(RUN)).toEqual({
      currentStep: 0,
      steps: [
        { name: 'bump-chart', workerApp: 'charts', review: false },
        { name: 'review', workerApp: 'console', review: true },
      ],
      reported: [{ stepName: 'bump-chart', success: true, done: true }],
    })
  })

  it('loads the step in flight as dispatched once its dispatch was accepted, and not the step after it', async () => {
    const store = await runningStore()
    const sent: string[] = []
    const activities = createActivities({ store, dispatcher: { dispatch: async (_target, request) => void sent.push(request.stepName) } })
    expect(await activities.beginStep(RUN, 0)).toBe(true)
    expect((await activities.load(RUN))?.dispatchedStep).toBeUndefined()
    await activities.dispatch(RUN, 0)
    expect(await activities.load(RUN)).toMatchObject({ currentStep: 0, dispatchedStep: 0 })
    expect((await store.getCandidate(M, 'billing-api'))?.run?.stepDispatchedAt).toEqual(expect.any(String))
    // A try whose answer was lost, run again: the store says the worker has the step, so nothing is sent.
    await activities.dispatch(RUN, 0)
    expect(sent).toEqual(['bump-chart'])
    // The next step begun: in flight, not dispatched yet.
    expect(await activities.beginStep(RUN, 1)).toBe(true)
    const plan = await activities.load(RUN)
    expect(plan?.currentStep).toBe(1)
    expect(plan?.dispatchedStep).toBeUndefined()
  })

  it('waits out a store that fails before the send, then sends once', async () => {
    const store = await runningStore()
    const flaky = failing(store, 'getCandidate', 2)
    const sent: string[] = []
    const activities = createActivities({
      store: flaky.store,
      dispatcher: { dispatch: async (_target, request) => void sent.push(request.stepName) },
      storeRetry: { initialMs: 20, maxMs: 50, totalMs: 2_000 },
    })
    expect(await activities.beginStep(RUN, 0)).toBe(true)
    flaky.arm()
    const started = Date.now()
    await activities.dispatch(RUN, 0)
    expect(Date.now() - started).toBeGreaterThanOrEqual(20 + 40)
    expect(flaky.failures()).toBe(2)
    expect(sent).toEqual(['bump-chart'])
    expect((await store.getCandidate(M, 'billing-api'))?.run?.stepDispatchedAt).toEqual(expect.any(String))
  })

  it('gives up on a store that stays down after storeRetry.totalMs: a retryable failure, nothing sent', async () => {
    const store = await runningStore()
    const down = failing(store, 'getCandidate', Number.POSITIVE_INFINITY)
    const sent: string[] = []
    const activities = createActivities({
      store: down.store,
      dispatcher: { dispatch: async (_target, request) => void sent.push(request.stepName) },
      storeRetry: { initialMs: 20, maxMs: 50, totalMs: 300 },
    })
    down.arm()
    const started = Date.now()
    const error = await activities.dispatch(RUN, 0).catch((e: unknown) => e)
    const took = Date.now() - started
    expect(error).toBeInstanceOf(ApplicationFailure)
    expect(error).toMatchObject({ type: 'LoomError:unavailable', nonRetryable: false, message: 'store: connection reset' })
    // 20 + 40 + 50 + 50 + 50 + 50 ms of waits: never past the total, never far short of it.
    expect(took).toBeGreaterThanOrEqual(250)
    expect(took).toBeLessThan(300 + 200)
    expect(down.failures()).toBe(7)
    expect(sent).toEqual([])
  })

  it('loads nothing for a stale attempt', async () => {
    const activities = createActivities({ store: await runningStore(), dispatcher: accepting })
    expect(await activities.load({ ...RUN, attempt: 2 })).toBeUndefined()
  })

  it('turns a stale dispatch into a non-retryable LoomError:conflict failure', async () => {
    const activities = createActivities({ store: await runningStore(), dispatcher: accepting })
    const error = await activities.dispatch({ ...RUN, attempt: 2 }, 0).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApplicationFailure)
    expect(error).toMatchObject({ type: 'LoomError:conflict', nonRetryable: true })
  })

  it('makes a refusal by the worker app non-retryable', async () => {
    const refusing = createActivities({
      store: await runningStore(),
      dispatcher: { dispatch: async () => Promise.reject(new LoomError('unauthorized', 'worker app charts: 401')) },
    })
    expect(await refusing.dispatch(RUN, 0).catch((e: unknown) => e)).toMatchObject({ type: 'LoomError:unauthorized', nonRetryable: true })
  })

  it('keeps an unreachable worker app retryable, and other errors as they are', async () => {
    const store = await runningStore()
    let tries = 0
    const down = createActivities({
      store,
      dispatcher: {
        dispatch: async () => {
          tries++
          throw new LoomError('unavailable', 'connection refused')
        },
      },
    })
    expect(await down.dispatch(RUN, 0).catch((e: unknown) => e)).toMatchObject({
      type: 'LoomError:unavailable',
      nonRetryable: false,
      message: 'connection refused',
    })
    // The worker's failure is the try's: Temporal retries it, counting it against dispatchAttempts.
    expect(tries).toBe(1)
    const broken = new TypeError('fetch failed')
    const failing = createActivities({ store, dispatcher: { dispatch: async () => Promise.reject(broken) } })
    expect(await failing.dispatch(RUN, 0).catch((e: unknown) => e)).toBe(broken)
  })

  it('dispatches the step with the run id as callback and the step event name', async () => {
    const sent: unknown[] = []
    const activities = createActivities({
      store: await runningStore(),
      dispatcher: { dispatch: async (target, request) => void sent.push({ target, request }) },
    })
    await activities.dispatch(RUN, 0)
    expect(sent).toEqual([
      {
        target: { workerApp: 'charts' },
        request: {
          migrationId: M,
          runId: RUN.runId,
          stepName: 'bump-chart',
          candidate: { id: 'billing-api' },
          callbackId: RUN.runId,
          eventName: 'step-completed:bump-chart',
          attempt: 1,
        },
      },
    ])
  })

  it("dispatches to the migration's owner: the target names the worker that announced it and its workerUrl", async () => {
    const store = memoryStore()
    const steps = [{ name: 'bump-chart', workerApp: 'charts' }]
    await store.upsertMigration(
      { id: M, name: 'App chart', steps, workerUrl: 'http://127.0.0.1:9/charts' },
      [{ id: 'billing-api' }],
      'team-charts',
    )
    // Another worker's announce leaves the migration, its URL included, as the owner made it.
    await store.upsertMigration({ id: M, name: 'App chart', steps, workerUrl: 'http://127.0.0.1:9/other' }, undefined, 'team-other')
    await store.transition({ migrationId: M, candidateId: 'billing-api', action: 'queue', at: at() })
    await store.transition({ migrationId: M, candidateId: 'billing-api', action: 'execute', at: at() })
    const targets: unknown[] = []
    const activities = createActivities({ store, dispatcher: { dispatch: async (target) => void targets.push(target) } })
    await activities.dispatch(RUN, 0)
    expect(targets).toEqual([{ workerApp: 'charts', workerUrl: 'http://127.0.0.1:9/charts', owner: 'team-charts' }])
  })

  it('ends the run through the store once, logging it once, and is idempotent when run again', async () => {
    const store = await runningStore()
    const activities = createActivities({ store, dispatcher: accepting })
    expect(await activities.finish(RUN, 'completed')).toBe(true)
    expect(await activities.finish(RUN, 'completed')).toBe(true)
    expect(await activities.finish(RUN, 'failed')).toBe(false)
    expect((await store.getCandidate(M, 'billing-api'))?.run?.state).toBe('completed')
    const ends = (await store.listActivity({ migrationId: M, limit: 100 })).filter(
      (e) => e.type === 'run.complete' || e.type === 'run.fail',
    )
    expect(ends.map((e) => [e.type, e.runId, e.actor])).toEqual([['run.complete', RUN.runId, { kind: 'system', name: 'loom' }]])
  })

  it('does not end a run that was cancelled meanwhile', async () => {
    const store = await runningStore()
    await store.transition({ migrationId: M, candidateId: 'billing-api', action: 'cancel', at: at() })
    const activities = createActivities({ store, dispatcher: accepting })
    expect(await activities.finish(RUN, 'completed')).toBe(false)
    expect((await store.getCandidate(M, 'billing-api'))?.run?.state).toBe('cancelled')
  })

  it('records a failed dispatch with its reason and resets the candidate', async () => {
    const store = await runningStore()
    const activities = createActivities({ store, dispatcher: accepting })
    await activities.failStep(RUN, 0, 'dispatch to worker app charts failed: connection refused')
    const run = (await store.getCandidate(M, 'billing-api'))?.run
    expect(run?.state).toBe('failed')
    expect(run?.steps[0]?.result).toEqual({
      stepName: 'bump-chart',
      candidate: { id: 'billing-api' },
      success: false,
      metadata: { error: 'dispatch to worker app charts failed: connection refused' },
    })
  })

  it('begins a manual-review step by recording that it awaits review', async () => {
    const store = await runningStore()
    const activities = createActivities({ store, dispatcher: accepting })
    expect(await activities.beginStep(RUN, 1)).toBe(true)
    const run = (await store.getCandidate(M, 'billing-api'))?.run
    expect(run?.currentStep).toBe(1)
    // API 0.2: a step waiting for an operator is a success in progress, so a 0.2 console offers Approve/Reject.
    expect(run?.steps[0]).toEqual({
      done: false,
      at: expect.any(String),
      result: { stepName: 'review', candidate: { id: 'billing-api' }, success: true, metadata: { phase: 'awaiting_review' } },
    })
    expect(await activities.beginStep({ ...RUN, attempt: 2 }, 1)).toBe(false)
  })
})

describe('loomWorkflowsPath', () => {
  it('finds the workflow module beside the package entry (the source file when run from source)', () => {
    expect(loomWorkflowsPath()).toMatch(/packages\/temporal\/src\/workflows\.ts$/)
  })
})
