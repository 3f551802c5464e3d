/**
 * Runs never get stuck on Temporal (issue 12): a step with no report fails at its deadline,
 * `execute {resume}` carries over what an earlier attempt did, and a run whose workflow is gone
 * is started again where the store says it stands, without dispatching a step twice.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, inject, it } from 'vitest'
import { Client, Connection } from '@temporalio/client'
import { LoomError, createLoom, memoryStore, type LoomDeps, type LoomInstance, type MigrationStore, type StepDefinition } from '@loom/core'
import { temporalEngine } from '../src/index'
import { recordingDispatcher, until, type RecordingDispatcher } from './support/fakes'
import { createHarness, type Harness } from './support/harness'

const address = inject('temporalAddress')
const M = 'app-chart'
const THREE_STEPS: StepDefinition[] = [
  { name: 'bump-chart', workerApp: 'charts' },
  { name: 'open-pr', workerApp: 'github' },
  { name: 'verify', workerApp: 'charts' },
]

interface World {
  store: MigrationStore
  dispatcher: RecordingDispatcher
  harness: Harness
  loom: LoomInstance
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function world(steps: StepDefinition[], reconcile: LoomDeps['reconcile']): Promise<World> {
  const store = memoryStore()
  const dispatcher = recordingDispatcher()
  const harness = await createHarness({ address, store, dispatcher })
  cleanups.push(() => harness.close())
  const loom = createLoom({ store, engine: harness.engine, dispatcher, reconcile, onError: () => {} })
  cleanups.push(() => loom.close())
  await loom.ready
  await loom.announce({ id: M, name: 'App chart', steps, candidates: [{ id: 'billing-api' }, { id: 'search-api' }] })
  return { store, dispatcher, harness, loom }
}

const report = (loom: LoomInstance, runId: string, stepName: string, success = true) =>
  loom.complete(runId, {
    stepName,
    candidate: { id: runId.split('__')[1]! },
    success,
    ...(success ? {} : { metadata: { error: `${stepName} broke` } }),
  })

const runOf = async (store: MigrationStore, candidateId: string) => (await store.getCandidate(M, candidateId))?.run

const stateIs = (store: MigrationStore, candidateId: string, state: string) =>
  until(async () => (await runOf(store, candidateId))?.state === state, 20_000, `${candidateId} ${state}`)

/** The dispatches of one candidate: step name and attempt, in order. */
const dispatchesOf = (dispatcher: RecordingDispatcher, candidateId: string) =>
  dispatcher.requests.filter((r) => r.candidate.id === candidateId).map((r) => [r.stepName, r.attempt])

/** Waits for the n-th dispatch (0-based) of one candidate. */
const nthOf = (dispatcher: RecordingDispatcher, candidateId: string, n: number) =>
  until(() => dispatcher.requests.filter((r) => r.candidate.id === candidateId)[n], 20_000, `dispatch #${n + 1} of ${candidateId}`)

describe('temporalEngine: step deadline', () => {
  it('fails a dispatched step with no report at its deadline, naming step, worker app and deadline', async () => {
    const intervalMs = 200
    const steps: StepDefinition[] = [{ name: 'bump-chart', workerApp: 'charts', config: { timeout: '2s' } }, THREE_STEPS[1]!]
    const { loom, store, dispatcher, harness } = await world(steps, { intervalMs })
    const runId = await loom.queue(M, 'billing-api')
    await loom.execute(runId)
    // The worker accepts the dispatch and never reports.
    await dispatcher.nth(0)
    const began = await until(async () => (await runOf(store, 'billing-api'))?.stepStartedAt, 5_000, 'stepStartedAt')

    await until(async () => (await runOf(store, 'billing-api'))?.state === 'failed', 10_000, 'the deadline')
    const step = (await runOf(store, 'billing-api'))?.steps[0]
    expect(step).toMatchObject({ done: true, result: { stepName: 'bump-chart', success: false } })
    // The bound: the deadline, plus up to a reconcile interval until a tick sees it, plus one for the tick itself.
    const late = Date.parse(step!.at) - Date.parse(began)
    expect(late).toBeGreaterThanOrEqual(2_000)
    expect(late).toBeLessThanOrEqual(2_000 + 2 * intervalMs)

    const error = step?.result.metadata?.error
    expect(error).toContain('step "bump-chart"')
    expect(error).toContain('worker app charts')
    expect(error).toContain('2s')
    const status = await loom.runStatus(runId)
    expect(status.runtimeStatus).toBe('FAILED')
    expect(status.result.results[0]?.metadata?.error).toBe(error)
    await expect(loom.getRun(runId)).rejects.toSatisfy((e) => LoomError.is(e, 'not_found')) // the candidate is not_started

    // The workflow heard of it and ended; nothing after the step was dispatched.
    const handle = harness.client.workflow.getHandle(runId)
    await until(async () => (await handle.describe()).status.name === 'COMPLETED', 20_000, 'workflow closed')
    expect(await harness.engine.progress(runId)).toMatchObject({ state: 'failed', currentStep: 'bump-chart' })
    expect(dispatchesOf(dispatcher, 'billing-api')).toEqual([['bump-chart', 1]])
  })
})

describe('temporalEngine: execute with resume', () => {
  it('carries over the steps that succeeded and starts at the step that failed, to completion', async () => {
    const { loom, store, dispatcher } = await world(THREE_STEPS, false)
    const runId = await loom.queue(M, 'billing-api')
    await loom.execute(runId)
    await nthOf(dispatcher, 'billing-api', 0)
    await report(loom, runId, 'bump-chart')
    await nthOf(dispatcher, 'billing-api', 1)
    await report(loom, runId, 'open-pr', false)
    await stateIs(store, 'billing-api', 'failed')

    await loom.queue(M, 'billing-api')
    await loom.execute(runId, { resume: true })
    expect(await nthOf(dispatcher, 'billing-api', 2)).toMatchObject({ stepName: 'open-pr', attempt: 2 })
    const carried = (await runOf(store, 'billing-api'))?.steps[0]
    expect(carried).toMatchObject({ carriedFrom: 1, done: true, result: { stepName: 'bump-chart', success: true } })
    await report(loom, runId, 'open-pr')
    expect(await nthOf(dispatcher, 'billing-api', 3)).toMatchObject({ stepName: 'verify', attempt: 2 })
    await report(loom, runId, 'verify')
    await stateIs(store, 'billing-api', 'completed')

    expect(dispatchesOf(dispatcher, 'billing-api')).toEqual([
      ['bump-chart', 1],
      ['open-pr', 1],
      ['open-pr', 2],
      ['verify', 2],
    ])
    const run = await runOf(store, 'billing-api')
    expect(run?.steps.map((s) => [s.result.stepName, s.result.success, s.carriedFrom])).toEqual([
      ['bump-chart', true, 1],
      ['open-pr', true, undefined],
      ['verify', true, undefined],
    ])
  })

  it('plain execute after failures, a resumed attempt among them, starts at step 1', async () => {
    const { loom, store, dispatcher } = await world(THREE_STEPS, false)
    const runId = await loom.queue(M, 'search-api')
    await loom.execute(runId)
    await nthOf(dispatcher, 'search-api', 0)
    await report(loom, runId, 'bump-chart')
    await nthOf(dispatcher, 'search-api', 1)
    await report(loom, runId, 'open-pr', false)
    await stateIs(store, 'search-api', 'failed')

    // Attempt 2 resumes at open-pr and fails again, at verify.
    await loom.queue(M, 'search-api')
    await loom.execute(runId, { resume: true })
    await nthOf(dispatcher, 'search-api', 2)
    await report(loom, runId, 'open-pr')
    await nthOf(dispatcher, 'search-api', 3)
    await report(loom, runId, 'verify', false)
    await stateIs(store, 'search-api', 'failed')

    await loom.queue(M, 'search-api')
    await loom.execute(runId)
    expect(await nthOf(dispatcher, 'search-api', 4)).toMatchObject({ stepName: 'bump-chart', attempt: 3 })
    const run = await runOf(store, 'search-api')
    expect({ attempt: run?.attempt, state: run?.state, carried: run?.steps.filter((s) => s.carriedFrom !== undefined) }).toEqual({
      attempt: 3,
      state: 'running',
      carried: [],
    })
    expect(dispatchesOf(dispatcher, 'search-api')).toEqual([
      ['bump-chart', 1],
      ['open-pr', 1],
      ['open-pr', 2],
      ['verify', 2],
      ['bump-chart', 3],
    ])
  })
})

describe('temporalEngine: a workflow that is gone', () => {
  /** Executes billing-api, waits until the store says its first step was dispatched, then terminates its workflow by hand. */
  async function gone(w: World) {
    const runId = await w.loom.queue(M, 'billing-api')
    await w.loom.execute(runId)
    await w.dispatcher.nth(0)
    await until(async () => (await runOf(w.store, 'billing-api'))?.stepDispatchedAt, 10_000, 'stepDispatchedAt')
    const handle = w.harness.client.workflow.getHandle(runId)
    const first = (await handle.describe()).runId
    await handle.terminate('terminated by hand')
    expect((await handle.describe()).status.name).toBe('TERMINATED')
    expect((await runOf(w.store, 'billing-api'))?.state).toBe('running')
    return { runId, first, run: { runId, migrationId: M, candidateId: 'billing-api', attempt: 1 } }
  }

  /** Waits for an open execution under `runId` other than `first`, and returns its Temporal run id. */
  const reopened = (harness: Harness, runId: string, first: string, ms = 20_000) =>
    until(
      async () => {
        const description = await harness.client.workflow.getHandle(runId).describe()
        return description.status.name === 'RUNNING' && description.runId !== first ? description.runId : undefined
      },
      ms,
      'a new execution',
    )

  /** Reports every step of billing-api as it is dispatched and waits for completion. */
  async function finish(w: World, runId: string) {
    await report(w.loom, runId, 'bump-chart')
    expect((await w.dispatcher.nth(1)).stepName).toBe('open-pr')
    await report(w.loom, runId, 'open-pr')
    expect((await w.dispatcher.nth(2)).stepName).toBe('verify')
    await report(w.loom, runId, 'verify')
    await stateIs(w.store, 'billing-api', 'completed')
  }

  it('engine.resume starts it again where the store says it stands; the dispatched step is not dispatched again', async () => {
    const w = await world(THREE_STEPS, false)
    const { runId, first, run } = await gone(w)

    await w.harness.engine.resume!(run)
    const second = await reopened(w.harness, runId, first)
    await until(async () => (await w.harness.engine.progress(runId))?.currentStep === 'bump-chart', 10_000, 'waiting on bump-chart')
    expect(await w.harness.engine.progress(runId)).toMatchObject({ state: 'running', attempt: 1, waitingFor: 'worker' })
    // Alive at this attempt (or a later one): resume does nothing.
    await w.harness.engine.resume!(run)
    await w.harness.engine.resume!({ ...run, attempt: 0 })
    expect((await w.harness.client.workflow.getHandle(runId).describe()).runId).toBe(second)
    expect(w.dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart'])

    await finish(w, runId)
    expect(w.dispatcher.requests.map((r) => [r.stepName, r.attempt])).toEqual([
      ['bump-chart', 1],
      ['open-pr', 1],
      ['verify', 1],
    ])
  })

  it("createLoom's reconciler notices the stalled run and resumes it, without dispatching again", async () => {
    const timings = { intervalMs: 200, stallMs: 500 }
    const w = await world(THREE_STEPS, timings)
    const { runId, first } = await gone(w)
    const terminatedAt = Date.now()

    await reopened(w.harness, runId, first, 10_000)
    // Within the stall time, plus a tick to notice and one to act on it, plus the start itself.
    expect(Date.now() - terminatedAt).toBeLessThan(timings.stallMs + 2 * timings.intervalMs + 2_000)
    await finish(w, runId)
    expect(w.dispatcher.requests.map((r) => [r.stepName, r.attempt])).toEqual([
      ['bump-chart', 1],
      ['open-pr', 1],
      ['verify', 1],
    ])
  })
})

describe('temporalEngine: resume of a newer attempt', () => {
  it('replaces an open workflow of an earlier attempt that does not close in time', async () => {
    // No worker: attempt 1's cancel is requested but never processed, so it stays open.
    const harness = await createHarness({
      address,
      store: memoryStore(),
      dispatcher: recordingDispatcher(),
      noWorker: true,
      engine: { supersedeWaitMs: 300 },
    })
    cleanups.push(() => harness.close())
    const run = { runId: 'app-chart__billing-api', migrationId: M, candidateId: 'billing-api', attempt: 1 }
    await harness.engine.start(run)
    await harness.engine.cancel(run.runId)
    await harness.engine.resume!({ ...run, attempt: 2 })

    const description = await harness.client.workflow.getHandle(run.runId).describe()
    expect({ status: description.status.name, attempt: description.memo?.loomAttempt }).toEqual({ status: 'RUNNING', attempt: 2 })
    let executions: [string, unknown][] = []
    await until(
      async () => {
        executions = []
        for await (const e of harness.client.workflow.list({
          query: `WorkflowId = '${run.runId}' AND TaskQueue = '${harness.taskQueue}'`,
        })) {
          executions.push([e.status.name, e.memo?.loomAttempt])
        }
        return executions.length === 2
      },
      20_000,
      'two executions',
    )
    expect(executions.sort()).toEqual([
      ['RUNNING', 2],
      ['TERMINATED', 1],
    ])
  })
})

describe('temporalEngine: deliver has its own deadline', () => {
  it('answers unavailable after deliverTimeoutMs when Temporal does not answer, not after the RPC deadline', async () => {
    // A server that accepts connections and never answers: every call runs into its deadline.
    const sockets = new Set<Socket>()
    const silent: Server = createServer((socket) => void sockets.add(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => silent.close(() => resolve()))
    })
    const { port } = silent.address() as { port: number }
    const connection = Connection.lazy({ address: `127.0.0.1:${port}`, connectTimeout: '20s' })
    cleanups.push(() => connection.close())
    const engine = temporalEngine({ client: new Client({ connection }), taskQueue: 'loom-silent', rpcTimeoutMs: 10_000 })

    const started = Date.now()
    const error = await engine
      .deliver('app-chart__billing-api', { stepName: 'bump-chart', success: true, done: true })
      .catch((e: unknown) => e)
    const took = Date.now() - started
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect((error as LoomError).message).toMatch(/^temporal: delivery to run app-chart__billing-api failed/)
    expect(took).toBeGreaterThanOrEqual(1_900)
    expect(took).toBeLessThan(4_000)
  })
})
