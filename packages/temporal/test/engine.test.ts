/**
 * `temporalEngine` and `loomRun` against a real Temporal server, through `createLoom` as an
 * embedding service uses them.
 */
import { afterEach, describe, expect, inject, it } from 'vitest'
import { Client, Connection } from '@temporalio/client'
import { LoomError, createLoom, memoryStore, type LoomInstance, type MigrationStore, type StepDefinition } from '@loom/core'
import { temporalEngine } from '../src/index'
import { recordingDispatcher, unreachable, until, type RecordingDispatcher } from './support/fakes'
import { createHarness, type Harness } from './support/harness'

const address = inject('temporalAddress')
const MIGRATION = 'app-chart'
const THREE_STEPS: StepDefinition[] = [
  { name: 'bump-chart', workerApp: 'charts' },
  { name: 'open-pr', workerApp: 'github' },
  { name: 'verify', workerApp: 'charts' },
]
/** The candidate as submitted: dispatches and step results carry all of it. */
const BILLING_API = { id: 'billing-api', kind: 'application', metadata: { team: 'payments' } }

interface World {
  store: MigrationStore
  dispatcher: RecordingDispatcher
  harness: Harness
  loom: LoomInstance
}

const opened: Harness[] = []
const looms: LoomInstance[] = []
const releases: (() => void)[] = []
afterEach(async () => {
  for (const release of releases.splice(0)) release()
  // Each Loom's reconciler first, so none ticks against a closed connection.
  await Promise.all(looms.splice(0).map((l) => l.close()))
  await Promise.all(opened.splice(0).map((h) => h.close()))
})

async function world(steps: StepDefinition[] = THREE_STEPS, engine: Parameters<typeof createHarness>[0]['engine'] = {}): Promise<World> {
  const store = memoryStore()
  const dispatcher = recordingDispatcher()
  const harness = await createHarness({ address, store, dispatcher, engine })
  opened.push(harness)
  const loom = createLoom({ store, engine: harness.engine, dispatcher, onError: () => {} })
  looms.push(loom)
  await loom.ready
  await loom.announce({ id: MIGRATION, name: 'App chart', steps, candidates: [BILLING_API, { id: 'search-api' }] })
  return { store, dispatcher, harness, loom }
}

/** A world whose billing-api run is executing, its first step dispatched. */
async function inFlight(): Promise<World & { runId: string }> {
  const w = await world()
  const runId = await w.loom.queue(MIGRATION, 'billing-api')
  await w.loom.execute(runId)
  await w.dispatcher.nth(0)
  return { ...w, runId }
}

const report = (loom: LoomInstance, runId: string, stepName: string, success = true, metadata?: Record<string, string>) =>
  loom.complete(runId, { stepName, candidate: { id: runId.split('__')[1]! }, success, ...(metadata ? { metadata } : {}) })

const statusOf = async (store: MigrationStore, candidateId: string) => {
  const found = await store.getCandidate(MIGRATION, candidateId)
  const state = found?.run?.state
  return state === 'queued' || state === 'running' || state === 'completed' ? state : 'not_started'
}

const workflowStatus = async (client: Client, runId: string) => (await client.workflow.getHandle(runId).describe()).status.name

/** Every execution Temporal lists for this run id on the harness's task queue: status and attempt. */
const executionsOf = async (harness: Harness, runId: string) => {
  const found: [string, unknown][] = []
  for await (const execution of harness.client.workflow.list({ query: `WorkflowId = '${runId}' AND TaskQueue = '${harness.taskQueue}'` })) {
    found.push([execution.status.name, execution.memo?.loomAttempt])
  }
  return found.sort()
}

describe('temporalEngine: a run', () => {
  it('dispatches each step after the previous one reported, then completes the candidate', async () => {
    const { loom, store, dispatcher, harness } = await world()
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)

    const first = await dispatcher.nth(0)
    expect(first).toMatchObject({ runId, stepName: 'bump-chart', callbackId: runId, eventName: 'step-completed:bump-chart' })
    expect(first.candidate).toEqual(BILLING_API)
    expect(await harness.engine.progress(runId)).toMatchObject({
      state: 'running',
      currentStep: 'bump-chart',
      waitingFor: 'worker',
      attempt: 1,
    })
    expect(dispatcher.requests).toHaveLength(1)

    await report(loom, runId, 'bump-chart')
    expect((await dispatcher.nth(1)).stepName).toBe('open-pr')
    await report(loom, runId, 'open-pr')
    expect((await dispatcher.nth(2)).stepName).toBe('verify')
    await report(loom, runId, 'verify')

    await until(async () => (await statusOf(store, 'billing-api')) === 'completed', 20_000, 'completed')
    await until(async () => (await workflowStatus(harness.client, runId)) === 'COMPLETED', 20_000, 'workflow closed')
    expect(await harness.engine.progress(runId)).toEqual({ runId, attempt: 1, state: 'completed', currentStep: 'verify' })
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart', 'open-pr', 'verify'])
    expect((await loom.getRun(runId)).steps?.map((s) => [s.stepName, s.success])).toEqual([
      ['bump-chart', true],
      ['open-pr', true],
      ['verify', true],
    ])
  })

  it('resets the candidate to not_started when a step fails, and dispatches nothing after it', async () => {
    const { loom, store, dispatcher, harness, runId } = await inFlight()
    await report(loom, runId, 'bump-chart', false, { error: 'chart not found' })

    await until(async () => (await statusOf(store, 'billing-api')) === 'not_started', 20_000, 'not_started')
    await until(async () => (await workflowStatus(harness.client, runId)) === 'COMPLETED', 20_000, 'workflow closed')
    expect(await harness.engine.progress(runId)).toMatchObject({ state: 'failed', currentStep: 'bump-chart' })
    expect(dispatcher.requests).toHaveLength(1)
    // The candidate can be queued and run again.
    expect(await loom.queue(MIGRATION, 'billing-api')).toBe(runId)
  })

  it('records a pull request opened without ending the wait for the step', async () => {
    const { loom, store, dispatcher, harness, runId } = await inFlight()
    await report(loom, runId, 'bump-chart')
    await dispatcher.nth(1)

    await loom.prOpened(runId, {
      stepName: 'open-pr',
      candidate: { id: 'billing-api' },
      success: true,
      metadata: { prUrl: 'https://example.test/pr/1' },
    })
    // The signal went through (the query sees its effect or none), and the run still waits on open-pr.
    const progress = await harness.engine.progress(runId)
    expect(progress).toMatchObject({ state: 'running', currentStep: 'open-pr', waitingFor: 'worker' })
    expect(dispatcher.requests).toHaveLength(2)
    const recorded = (await store.getCandidate(MIGRATION, 'billing-api'))?.run?.steps.find((s) => s.result.stepName === 'open-pr')
    expect(recorded).toMatchObject({ done: false, result: { metadata: { phase: 'open', prUrl: 'https://example.test/pr/1' } } })

    await report(loom, runId, 'open-pr', true, { prUrl: 'https://example.test/pr/1', phase: 'merged' })
    expect((await dispatcher.nth(2)).stepName).toBe('verify')
  })

  it('holds a manual-review step for approve, without dispatching it', async () => {
    const steps: StepDefinition[] = [
      { name: 'bump-chart', workerApp: 'charts' },
      { name: 'review', workerApp: 'console', config: { type: 'manual-review', instructions: 'Check the diff' } },
      { name: 'verify', workerApp: 'charts' },
    ]
    const { loom, store, dispatcher, harness } = await world(steps)
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)
    await dispatcher.nth(0)
    await report(loom, runId, 'bump-chart')

    const review = await until(
      async () => {
        const progress = await harness.engine.progress(runId)
        return progress?.waitingFor === 'review' ? progress : undefined
      },
      20_000,
      'review',
    )
    expect(review).toMatchObject({ currentStep: 'review', state: 'running' })
    const run = await loom.getRun(runId)
    // API 0.2: waiting for an operator is a success in progress (a 0.2 console reads `success` before `phase`), with the whole candidate.
    expect(run.steps?.find((s) => s.stepName === 'review')).toEqual({
      stepName: 'review',
      candidate: BILLING_API,
      success: true,
      metadata: { phase: 'awaiting_review', instructions: 'Check the diff' },
    })
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart'])

    await report(loom, runId, 'review', true)
    expect((await dispatcher.nth(1)).stepName).toBe('verify')
    await report(loom, runId, 'verify')
    await until(async () => (await statusOf(store, 'billing-api')) === 'completed', 20_000, 'completed')
  })

  it('ends the run when a manual-review step is rejected', async () => {
    const steps: StepDefinition[] = [
      { name: 'review', workerApp: 'console', config: { type: 'manual-review' } },
      { name: 'bump-chart', workerApp: 'charts' },
    ]
    const { loom, store, dispatcher, harness } = await world(steps)
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)
    await until(async () => (await harness.engine.progress(runId))?.waitingFor === 'review', 20_000, 'review')

    await report(loom, runId, 'review', false, { reason: 'not now' })
    await until(async () => (await statusOf(store, 'billing-api')) === 'not_started', 20_000, 'not_started')
    await until(async () => (await workflowStatus(harness.client, runId)) === 'COMPLETED', 20_000, 'workflow closed')
    expect(dispatcher.requests).toHaveLength(0)
  })

  it('fails the step after the bounded dispatch retries, recording why', async () => {
    const { loom, store, dispatcher } = await world(THREE_STEPS, { run: { dispatchAttempts: 3, dispatchRetryIntervalMs: 50 } })
    dispatcher.behaviour = unreachable
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)

    await until(async () => (await statusOf(store, 'billing-api')) === 'not_started', 30_000, 'not_started')
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart', 'bump-chart', 'bump-chart'])
    const step = (await store.getCandidate(MIGRATION, 'billing-api'))?.run?.steps[0]
    expect(step?.done).toBe(true)
    expect(step?.result.success).toBe(false)
    expect(step?.result.metadata?.error).toBe('dispatch to worker app charts failed: worker app charts: connection refused')
  })

  it('fails the step at once when the worker app refuses it', async () => {
    const { loom, store, dispatcher } = await world(THREE_STEPS, { run: { dispatchAttempts: 4, dispatchRetryIntervalMs: 50 } })
    dispatcher.behaviour = () => {
      throw new LoomError('invalid', 'worker app charts: unknown step bump-chart')
    }
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)

    await until(async () => (await statusOf(store, 'billing-api')) === 'not_started', 30_000, 'not_started')
    expect(dispatcher.requests).toHaveLength(1)
    const step = (await store.getCandidate(MIGRATION, 'billing-api'))?.run?.steps[0]
    expect(step?.result.metadata?.error).toBe('dispatch to worker app charts failed: worker app charts: unknown step bump-chart')
  })
})

describe('temporalEngine: events that come early or twice', () => {
  it('keeps a step event signalled before the run waits for that step', async () => {
    const { loom, store, dispatcher, harness } = await world()
    let release!: () => void
    const blocked = new Promise<void>((resolve) => (release = resolve))
    dispatcher.behaviour = (request) => (request.stepName === 'bump-chart' ? blocked : undefined)
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)
    await dispatcher.nth(0)

    // While step 1 is still being dispatched, step 2's outcome arrives (straight from the engine, not the store).
    await harness.engine.deliver(runId, { stepName: 'open-pr', success: true, done: true })
    release()
    await report(loom, runId, 'bump-chart')

    // open-pr is never dispatched: its outcome was already there when the run reached it.
    expect((await dispatcher.nth(1)).stepName).toBe('verify')
    await report(loom, runId, 'verify')
    await until(async () => (await statusOf(store, 'billing-api')) === 'completed', 20_000, 'completed')
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart', 'verify'])
  })

  it('finds a step outcome recorded in the store before the workflow started', async () => {
    const { store, dispatcher, harness, loom } = await world()
    const runId = await loom.queue(MIGRATION, 'billing-api')
    // As createLoom.execute does, but with the worker's report landing before engine.start.
    const moved = await store.transition({
      migrationId: MIGRATION,
      candidateId: 'billing-api',
      action: 'execute',
      at: new Date().toISOString(),
    })
    expect(moved.ok).toBe(true)
    await store.recordStep({
      migrationId: MIGRATION,
      candidateId: 'billing-api',
      result: { stepName: 'bump-chart', candidate: { id: 'billing-api' }, success: true },
      done: true,
      at: new Date().toISOString(),
    })
    await harness.engine.start({ runId, migrationId: MIGRATION, candidateId: 'billing-api', attempt: 1 })

    expect((await dispatcher.nth(0)).stepName).toBe('open-pr')
    expect(dispatcher.requests).toHaveLength(1)
  })

  it('ignores a duplicate event: the next step is dispatched once', async () => {
    const { loom, dispatcher, harness, runId } = await inFlight()
    await report(loom, runId, 'bump-chart')
    await report(loom, runId, 'bump-chart') // a retried report: the store says duplicate, the engine gets it again
    await harness.engine.deliver(runId, { stepName: 'bump-chart', success: true, done: true })
    await dispatcher.nth(1)
    await report(loom, runId, 'open-pr')
    await dispatcher.nth(2)
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart', 'open-pr', 'verify'])
  })

  it('accepts delivery, cancel and progress for a run Temporal never saw', async () => {
    const { harness } = await world()
    await expect(
      harness.engine.deliver('app-chart__nobody', { stepName: 'bump-chart', success: true, done: true }),
    ).resolves.toBeUndefined()
    await expect(harness.engine.cancel('app-chart__nobody')).resolves.toBeUndefined()
    await expect(harness.engine.progress('app-chart__nobody')).resolves.toBeUndefined()
  })
})

/** The activity events of a run's workflow: dispatches scheduled (with their startToClose, in s), cancels requested, tries failed. */
const activityEventsOf = async (harness: Harness, runId: string) =>
  ((await harness.client.workflow.getHandle(runId).fetchHistory()).events ?? []).flatMap((e) => {
    const scheduled = e.activityTaskScheduledEventAttributes
    if (scheduled) return [`scheduled ${scheduled.activityType?.name} ${scheduled.startToCloseTimeout?.seconds}s`]
    if (e.activityTaskCancelRequestedEventAttributes) return ['cancel requested']
    if (e.activityTaskFailedEventAttributes) return ['failed']
    return []
  })

/**
 * A dispatcher whose bump-chart dispatch hangs until `release` (then fails), as one whose answer
 * Temporal never got. Released after the test at the latest: a worker shuts down only once its activities end.
 */
function hangingBumpChart(dispatcher: RecordingDispatcher) {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  releases.push(release)
  dispatcher.behaviour = async (request) => {
    if (request.stepName !== 'bump-chart') return
    await gate
    throw new LoomError('unavailable', 'worker app charts: connection reset')
  }
  return release
}

describe('temporalEngine: an outcome that comes before its dispatch answered', () => {
  it('goes on with the outcome, cancels the dispatch, and a failure of that dispatch later fails nothing', async () => {
    const { loom, store, dispatcher, harness } = await world(THREE_STEPS, { run: { dispatchRetryIntervalMs: 50 } })
    const release = hangingBumpChart(dispatcher)
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)
    await dispatcher.nth(0)

    // The worker reports while its dispatch has not answered: the run does not wait for that answer.
    await report(loom, runId, 'bump-chart')
    expect((await dispatcher.nth(1)).stepName).toBe('open-pr')
    expect(await activityEventsOf(harness, runId)).toEqual(['scheduled dispatch 20s', 'cancel requested', 'scheduled dispatch 20s'])

    // The hung dispatch now fails: Temporal does not try it again (its cancel was requested), and the step stands.
    release()
    await until(async () => (await activityEventsOf(harness, runId)).includes('failed'), 20_000, 'the first dispatch failed')
    await report(loom, runId, 'open-pr')
    expect((await dispatcher.nth(2)).stepName).toBe('verify')
    await report(loom, runId, 'verify')
    await until(async () => (await statusOf(store, 'billing-api')) === 'completed', 20_000, 'completed')
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart', 'open-pr', 'verify'])
    expect((await store.getCandidate(MIGRATION, 'billing-api'))?.run?.steps.map((s) => [s.result.stepName, s.result.success])).toEqual([
      ['bump-chart', true],
      ['open-pr', true],
      ['verify', true],
    ])
  })

  it('cancelling the run while a dispatch is pending closes the workflow as cancelled', async () => {
    const { loom, store, dispatcher, harness } = await world()
    const release = hangingBumpChart(dispatcher)
    const runId = await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId)
    await dispatcher.nth(0)

    await loom.cancel(runId)
    await until(async () => (await workflowStatus(harness.client, runId)) === 'CANCELLED', 20_000, 'workflow cancelled')
    expect(await harness.engine.progress(runId)).toEqual({ runId, attempt: 1, state: 'cancelled' })
    expect(await statusOf(store, 'billing-api')).toBe('not_started')
    release()
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart'])
  })
})

describe('temporalEngine: cancel, conflict and re-execute', () => {
  it('cancel while a step is in flight closes the workflow as cancelled; executing again completes', async () => {
    const { loom, store, dispatcher, harness, runId } = await inFlight()

    await loom.cancel(runId)
    await until(async () => (await workflowStatus(harness.client, runId)) === 'CANCELLED', 20_000, 'workflow cancelled')
    expect(await statusOf(store, 'billing-api')).toBe('not_started')
    const migration = await loom.getMigration(MIGRATION)
    expect(migration.cancelledAttempts?.map((a) => [a.runId, a.candidateId])).toEqual([[runId, 'billing-api']])
    expect(await harness.engine.progress(runId)).toEqual({ runId, attempt: 1, state: 'cancelled' })
    // A late report for the cancelled attempt changes nothing and dispatches nothing.
    await expect(report(loom, runId, 'bump-chart')).rejects.toSatisfy((e) => LoomError.is(e, 'conflict'))
    expect(dispatcher.requests).toHaveLength(1)

    expect(await loom.queue(MIGRATION, 'billing-api')).toBe(runId)
    await loom.execute(runId)
    const again = await dispatcher.nth(1)
    expect(again.stepName).toBe('bump-chart')
    for (const step of ['bump-chart', 'open-pr', 'verify']) {
      await until(() => dispatcher.requests.filter((r) => r.stepName === step).length >= (step === 'bump-chart' ? 2 : 1), 20_000, step)
      await report(loom, runId, step)
    }
    await until(async () => (await statusOf(store, 'billing-api')) === 'completed', 20_000, 'completed')

    // Temporal holds exactly two executions for this id (on this test's task queue): the cancelled one and the completed one.
    let last: [string, unknown][] = []
    const executions = await until(
      async () => {
        last = await executionsOf(harness, runId)
        return last.length === 2 && !last.some(([status]) => status === 'RUNNING') ? last : undefined
      },
      20_000,
      'two closed executions',
    ).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(last)}`)
    })
    expect(executions).toEqual([
      ['CANCELLED', 1],
      ['COMPLETED', 2],
    ])
  })

  it('executing again right after a cancel waits for the cancelled workflow to close', async () => {
    const { loom, store, dispatcher, harness, runId } = await inFlight()
    await loom.cancel(runId)
    await loom.queue(MIGRATION, 'billing-api')
    await loom.execute(runId) // no wait in between: the first workflow may still be open

    expect((await dispatcher.nth(1)).stepName).toBe('bump-chart')
    expect(await harness.engine.progress(runId)).toMatchObject({ state: 'running', attempt: 2 })
    expect(await statusOf(store, 'billing-api')).toBe('running')
  })

  it('a start terminates an open workflow of an earlier attempt that does not close in time', async () => {
    // No worker: a cancel is requested but never processed, so attempt 1 stays open.
    const store = memoryStore()
    const harness = await createHarness({
      address,
      store,
      dispatcher: recordingDispatcher(),
      noWorker: true,
      engine: { supersedeWaitMs: 300 },
    })
    opened.push(harness)
    const run = { runId: 'app-chart__billing-api', migrationId: MIGRATION, candidateId: 'billing-api', attempt: 1 }
    await harness.engine.start(run)
    await harness.engine.cancel(run.runId)
    await expect(harness.engine.start(run)).rejects.toSatisfy((e) => LoomError.is(e, 'conflict'))

    await harness.engine.start({ ...run, attempt: 2 })
    // Visibility catches up asynchronously: wait until it lists both executions.
    const executions = await until(
      async () => {
        const found = await executionsOf(harness, run.runId)
        return found.length === 2 && found.some(([status]) => status === 'TERMINATED') ? found : undefined
      },
      20_000,
      'two executions',
    )
    expect(executions).toEqual([
      ['RUNNING', 2],
      ['TERMINATED', 1],
    ])
  })

  it('refuses to start a run whose workflow is open at the same attempt: conflict', async () => {
    const { dispatcher, harness, runId } = await inFlight()
    const open = await harness.client.workflow.getHandle(runId).describe()
    const again = harness.engine.start({ runId, migrationId: MIGRATION, candidateId: 'billing-api', attempt: 1 })
    await expect(again).rejects.toSatisfy((e) => LoomError.is(e, 'conflict'))
    // The same execution goes on: not terminated, not replaced by a second one.
    const after = await harness.client.workflow.getHandle(runId).describe()
    expect({ runId: after.runId, status: after.status.name }).toEqual({ runId: open.runId, status: 'RUNNING' })
    expect(dispatcher.requests).toHaveLength(1)
  })

  it('cancelling twice, then once more after the workflow closed, closes one execution as cancelled', async () => {
    const { loom, dispatcher, harness, runId } = await inFlight()
    await loom.cancel(runId)
    await harness.engine.cancel(runId)
    await until(async () => (await workflowStatus(harness.client, runId)) === 'CANCELLED', 20_000, 'workflow cancelled')
    await harness.engine.cancel(runId)

    let last: [string, unknown][] = []
    await until(
      async () => {
        last = await executionsOf(harness, runId)
        return last.length > 0 && !last.some(([status]) => status === 'RUNNING')
      },
      20_000,
      'a closed execution',
    )
    expect(last).toEqual([['CANCELLED', 1]])
    expect(await harness.engine.progress(runId)).toEqual({ runId, attempt: 1, state: 'cancelled' })
    expect(dispatcher.requests).toHaveLength(1)
  })

  it('a run whose store record moved on ends at its next step without touching the candidate', async () => {
    const { store, dispatcher, harness, runId } = await inFlight()
    // Cancelled in the store only, as when Temporal could not be told.
    await store.transition({
      migrationId: MIGRATION,
      candidateId: 'billing-api',
      action: 'cancel',
      at: new Date().toISOString(),
    })
    await harness.engine.deliver(runId, { stepName: 'bump-chart', success: true, done: true })

    await until(async () => (await workflowStatus(harness.client, runId)) === 'COMPLETED', 20_000, 'workflow closed')
    expect(await harness.engine.progress(runId)).toMatchObject({ state: 'cancelled' })
    expect(dispatcher.requests).toHaveLength(1)
    expect(await statusOf(store, 'billing-api')).toBe('not_started')
  })
})

describe('temporalEngine: Temporal unreachable', () => {
  it('execute answers unavailable and the candidate stays queued', async () => {
    const store = memoryStore()
    const connection = Connection.lazy({ address: '127.0.0.1:1', connectTimeout: '1s' })
    const engine = temporalEngine({ client: new Client({ connection }), taskQueue: 'loom-unreachable', rpcTimeoutMs: 1_500 })
    const loom = createLoom({ store, engine, dispatcher: recordingDispatcher(), onError: () => {} })
    looms.push(loom)
    await loom.announce({ id: MIGRATION, name: 'App chart', steps: THREE_STEPS, candidates: [{ id: 'billing-api' }] })
    const runId = await loom.queue(MIGRATION, 'billing-api')

    const error = await loom.execute(runId).catch((e: unknown) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect((error as LoomError).message).toMatch(/^temporal: start of run app-chart__billing-api failed/)
    expect(await statusOf(store, 'billing-api')).toBe('queued')
    await expect(loom.health()).rejects.toSatisfy((e) => LoomError.is(e, 'unavailable'))
    await connection.close()
  })

  it('health resolves when Temporal answers', async () => {
    const { loom } = await world()
    await expect(loom.health()).resolves.toEqual({ status: 'ok' })
  })
})
