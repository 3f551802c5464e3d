import { afterEach, beforeEach, describe, expect } from 'vitest'
import { createLoom, type LoomInstance } from '../loom/index'
import { memoryStore } from '../memory-store'
import type { Engine, MigrationStore, StepDispatcher } from '../ports'
import { announcement, eventually, expectLoomError, fakeWorker, type FakeWorker } from './fakes'
import { contractTests, type ContractOptions } from './contract-test'

export type EngineFactory = (deps: {
  store: MigrationStore
  dispatcher: StepDispatcher
}) => Promise<{ engine: Engine; close?: () => Promise<void> }>

/** What `engineContract` accepts besides its factory: the skips of every suite, the store, the patience. */
export interface EngineContractOptions extends ContractOptions {
  /** The store runs are kept in. Default: a fresh `memoryStore()` per test. */
  store?: () => Promise<MigrationStore> | MigrationStore
  /** How long to wait for a run to reach a state. Default 20 s. */
  timeoutMs?: number
}

/**
 * The `Engine` contract, exercised through `createLoom` with a fake worker: steps are
 * dispatched in order, each waits for its event, the last success completes the run, a
 * failure or a failed dispatch resets the candidate, cancel stops the run and is idempotent,
 * a start while the run is open is a conflict that changes nothing, manual-review steps
 * wait for approve or reject, an early or repeated event is neither lost nor applied twice.
 *
 * The factory builds the engine on the store and dispatcher it is given (an engine hosted
 * elsewhere, like a Temporal worker, must use them for its runs). It should retry a failed
 * dispatch only briefly, so the dispatch-failure test finishes within the timeout.
 * `options.skip` excuses the engine from tests by name, each with its reason.
 */
export function engineContract(name: string, factory: EngineFactory, options: EngineContractOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 20_000
  describe(`Engine contract: ${name}`, () => {
    const { test, done } = contractTests(name, options)
    let loom: LoomInstance
    let engine: Engine
    let store: MigrationStore
    let worker: FakeWorker
    let close: (() => Promise<void>) | undefined
    const M = 'app-chart'
    const RUN = 'app-chart__billing-api'

    const statusOf = async (candidateId = 'billing-api') => (await loom.listCandidates(M)).find((c) => c.id === candidateId)?.status
    const until = <T>(probe: () => Promise<T> | T) => eventually(probe, { timeoutMs })
    const waitStatus = (status: string, candidateId = 'billing-api') => until(async () => expect(await statusOf(candidateId)).toBe(status))
    const waitSteps = (steps: string[], runId = RUN) => until(() => expect(worker.stepsOf(runId)).toEqual(steps))
    const step = (stepName: string, success = true, runId = RUN, metadata?: Record<string, string>) =>
      loom.complete(runId, { stepName, candidate: { id: runId.split('__')[1]! }, success, ...(metadata ? { metadata } : {}) })

    const setup = async (steps = ['update-chart', 'open-pr', 'merge'], manual: string[] = []) => {
      await loom.announce(announcement(M, { steps, manual, candidates: [{ id: 'billing-api', kind: 'application' }, { id: 'ledger' }] }))
    }

    beforeEach(async () => {
      worker = fakeWorker()
      store = options.store ? await options.store() : memoryStore()
      ;({ engine, close } = await factory({ store, dispatcher: worker.dispatcher }))
      loom = createLoom({ store, engine, dispatcher: worker.dispatcher, dryRunner: worker.dryRunner, onError: () => {} })
      await loom.ready
    })
    afterEach(async () => {
      await loom.close()
      await close?.()
    })

    test('dispatches the first step with the run id as callback, then each next step after the previous succeeds, and completes', {
      timeout: timeoutMs * 2,
    }, async () => {
      await setup()
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      const first = worker.dispatched[0]!
      expect(first.target).toEqual({ workerApp: 'charts', workerUrl: 'http://127.0.0.1:9/worker' })
      expect(first.request).toMatchObject({
        migrationId: M,
        runId: RUN,
        stepName: 'update-chart',
        candidate: { id: 'billing-api', kind: 'application' },
        config: { chart: 'app' },
        callbackId: RUN,
      })
      expect(first.request.eventName).toContain('update-chart')
      expect(await statusOf()).toBe('running')
      await step('update-chart', true, RUN, { prUrl: 'https://git.example/pr/1' })
      await waitSteps(['update-chart', 'open-pr'])
      await step('open-pr')
      await waitSteps(['update-chart', 'open-pr', 'merge'])
      expect(await statusOf()).toBe('running')
      await step('merge')
      await waitStatus('completed')
      const run = await loom.getRun(RUN)
      expect(run.steps?.map((s) => [s.stepName, s.success])).toEqual([
        ['update-chart', true],
        ['open-pr', true],
        ['merge', true],
      ])
      expect(run.steps?.[0]?.metadata?.prUrl).toBe('https://git.example/pr/1')
      expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'open-pr', 'merge'])
    })

    test('reports progress: the step the run waits on', { timeout: timeoutMs * 2 }, async () => {
      await setup()
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      await until(async () =>
        expect(await engine.progress(RUN)).toMatchObject({ runId: RUN, state: 'running', currentStep: 'update-chart' }),
      )
      await step('update-chart')
      await until(async () => expect(await engine.progress(RUN)).toMatchObject({ state: 'running', currentStep: 'open-pr' }))
    })

    test('resets the candidate to not_started when a step fails, dispatching nothing more; it can run again', {
      timeout: timeoutMs * 2,
    }, async () => {
      await setup(['update-chart', 'open-pr'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      await step('update-chart', false, RUN, { error: 'chart not found' })
      await waitStatus('not_started')
      const status = await loom.runStatus(RUN)
      expect(status.runtimeStatus).toBe('FAILED')
      expect(status.result.results).toEqual([
        {
          stepName: 'update-chart',
          candidate: { id: 'billing-api', kind: 'application' },
          success: false,
          metadata: { error: 'chart not found' },
        },
      ])
      await new Promise((r) => setTimeout(r, 200))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart', 'update-chart'])
      await step('update-chart')
      await waitSteps(['update-chart', 'update-chart', 'open-pr'])
      await step('open-pr')
      await waitStatus('completed')
    })

    test('stops the run on cancel: no further dispatch, the event afterwards is refused', { timeout: timeoutMs * 2 }, async () => {
      await setup()
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      await loom.cancel(RUN)
      expect(await statusOf()).toBe('not_started')
      const migration = await loom.getMigration(M)
      expect(migration.cancelledAttempts?.map((a) => a.runId)).toEqual([RUN])
      await until(async () => expect((await engine.progress(RUN))?.state ?? 'gone').not.toBe('running'))
      await expectLoomError(step('update-chart'), 'conflict')
      await new Promise((r) => setTimeout(r, 300))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
      expect(await statusOf()).toBe('not_started')
    })

    test('runs the same run id again after a cancel, to completion', { timeout: timeoutMs * 2 }, async () => {
      await setup(['update-chart'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      await loom.cancel(RUN)
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart', 'update-chart'])
      await step('update-chart')
      await waitStatus('completed')
    })

    test('refuses to start a run whose id is still open, and the open run goes on as one run', { timeout: timeoutMs * 2 }, async () => {
      await setup()
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      // The engine records the dispatch after the worker took it: read the run once that write is in.
      await until(async () => expect((await store.getCandidate(M, 'billing-api'))!.run!.stepDispatchedAt).toBeDefined())
      const before = await store.getCandidate(M, 'billing-api')
      const attempt = before!.run!.attempt
      const again = { runId: RUN, migrationId: M, candidateId: 'billing-api', attempt }
      await expectLoomError(engine.start(again), 'conflict')
      await expectLoomError(engine.start(again), 'conflict')
      expect((await store.getCandidate(M, 'billing-api'))?.run).toEqual(before!.run)
      expect(await engine.progress(RUN)).toMatchObject({ runId: RUN, attempt, state: 'running', currentStep: 'update-chart' })
      // A second run under this id would dispatch its first step again, or each next step twice.
      await new Promise((r) => setTimeout(r, 200))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
      await step('update-chart')
      await waitSteps(['update-chart', 'open-pr'])
      await step('open-pr')
      await waitSteps(['update-chart', 'open-pr', 'merge'])
      await step('merge')
      await waitStatus('completed')
      await new Promise((r) => setTimeout(r, 200))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'open-pr', 'merge'])
      expect(await engine.progress(RUN)).toMatchObject({ attempt, state: 'completed' })
    })

    test('resumes a run it drives by doing nothing: no second run, no step sent twice', { timeout: timeoutMs * 2 }, async () => {
      await setup()
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      // The step was accepted: the store says so, and a resume must not send it again.
      await until(async () => expect((await store.getCandidate(M, 'billing-api'))!.run!.stepDispatchedAt).toBeDefined())
      const attempt = (await store.getCandidate(M, 'billing-api'))!.run!.attempt
      const run = { runId: RUN, migrationId: M, candidateId: 'billing-api', attempt }
      await Promise.all([engine.resume?.(run), engine.resume?.(run)])
      await engine.resume?.(run)
      await new Promise((r) => setTimeout(r, 300))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
      await step('update-chart')
      await waitSteps(['update-chart', 'open-pr'])
      await engine.resume?.(run)
      await step('open-pr')
      await waitSteps(['update-chart', 'open-pr', 'merge'])
      await step('merge')
      await waitStatus('completed')
      await new Promise((r) => setTimeout(r, 200))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'open-pr', 'merge'])
    })

    test('cancels idempotently: twice, at once, after the run ended, or a run it never had', { timeout: timeoutMs * 2 }, async () => {
      await setup(['update-chart', 'open-pr'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      const attempt = (await store.getCandidate(M, 'billing-api'))!.run!.attempt
      await loom.cancel(RUN)
      await Promise.all([engine.cancel(RUN), engine.cancel(RUN)])
      const ended = async () => expect(['cancelled', 'gone']).toContain((await engine.progress(RUN))?.state ?? 'gone')
      await until(ended)
      await engine.cancel(RUN)
      await engine.cancel('app-chart__no-such-candidate')
      expect(await engine.progress('app-chart__no-such-candidate')).toBeUndefined()
      // The event the worker sends anyway reaches the engine for a run that is over.
      await engine.deliver(RUN, { stepName: 'update-chart', success: true, done: true })
      await new Promise((r) => setTimeout(r, 300))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
      await ended()
      const found = await store.getCandidate(M, 'billing-api')
      expect({ state: found?.run?.state, attempt: found?.run?.attempt }).toEqual({ state: 'cancelled', attempt })
      expect((await loom.getMigration(M)).cancelledAttempts?.map((a) => a.runId)).toEqual([RUN])

      // A run that completed stays completed.
      const LEDGER = 'app-chart__ledger'
      await loom.execute(await loom.queue(M, 'ledger'))
      await waitSteps(['update-chart'], LEDGER)
      await step('update-chart', true, LEDGER)
      await waitSteps(['update-chart', 'open-pr'], LEDGER)
      await step('open-pr', true, LEDGER)
      await waitStatus('completed', 'ledger')
      await until(async () => expect((await engine.progress(LEDGER))?.state).toBe('completed'))
      await engine.cancel(LEDGER)
      await engine.cancel(LEDGER)
      expect((await engine.progress(LEDGER))?.state).toBe('completed')
      expect(worker.stepsOf(LEDGER)).toEqual(['update-chart', 'open-pr'])
      expect(await statusOf('ledger')).toBe('completed')
    })

    test('holds a manual-review step without dispatching it until approved', { timeout: timeoutMs * 2 }, async () => {
      await setup(['update-chart', 'review', 'merge'], ['review'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      await step('update-chart')
      await until(async () => {
        const run = await loom.getRun(RUN)
        expect(run.steps?.find((s) => s.stepName === 'review')?.metadata).toEqual({
          phase: 'awaiting_review',
          instructions: 'Check the diff',
        })
      })
      await new Promise((r) => setTimeout(r, 200))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
      expect(await statusOf()).toBe('running')
      await step('review', true, RUN, { approvedBy: 'operator' })
      await waitSteps(['update-chart', 'merge'])
      await step('merge')
      await waitStatus('completed')
    })

    test('resets the candidate when a manual-review step is rejected', { timeout: timeoutMs * 2 }, async () => {
      await setup(['review', 'merge'], ['review'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await until(async () => expect((await loom.getRun(RUN)).steps?.[0]?.metadata?.phase).toBe('awaiting_review'))
      await step('review', false)
      await waitStatus('not_started')
      expect(worker.stepsOf(RUN)).toEqual([])
    })

    test('does not lose an event that arrives before the run waits for it (a worker that reports during dispatch)', {
      timeout: timeoutMs * 2,
    }, async () => {
      await setup()
      worker.onDispatch = async (request) => {
        await loom.complete(request.runId, { stepName: request.stepName, candidate: { id: request.candidate.id }, success: true })
      }
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitStatus('completed')
      expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'open-pr', 'merge'])
    })

    test('accepts a repeated step event once and ignores it after', { timeout: timeoutMs * 2 }, async () => {
      await setup()
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      await step('update-chart')
      await step('update-chart')
      await waitSteps(['update-chart', 'open-pr'])
      await step('update-chart')
      await new Promise((r) => setTimeout(r, 300))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'open-pr'])
      expect((await loom.getRun(RUN)).steps?.filter((s) => s.stepName === 'update-chart')).toHaveLength(1)
      await expectLoomError(step('update-chart', false), 'conflict')
      expect(await statusOf()).toBe('running')
    })

    test('records a pull request opened without ending the step', { timeout: timeoutMs * 2 }, async () => {
      await setup(['update-chart', 'open-pr'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitSteps(['update-chart'])
      await loom.prOpened(RUN, {
        stepName: 'update-chart',
        candidate: { id: 'billing-api' },
        success: true,
        metadata: { prUrl: 'https://git.example/pr/7' },
      })
      await new Promise((r) => setTimeout(r, 300))
      expect(worker.stepsOf(RUN)).toEqual(['update-chart'])
      expect((await loom.getRun(RUN)).steps).toEqual([
        {
          stepName: 'update-chart',
          candidate: { id: 'billing-api', kind: 'application' },
          success: true,
          metadata: { phase: 'open', prUrl: 'https://git.example/pr/7' },
        },
      ])
      await step('update-chart', true, RUN, { phase: 'merged', prUrl: 'https://git.example/pr/7' })
      await waitSteps(['update-chart', 'open-pr'])
    })

    test('does not leave a candidate running when its step cannot be dispatched', { timeout: timeoutMs * 2 }, async () => {
      await setup()
      worker.failDispatch = new Error('connect ECONNREFUSED 127.0.0.1:9')
      await loom.execute(await loom.queue(M, 'billing-api'))
      await waitStatus('not_started')
      const status = await loom.runStatus(RUN)
      expect(status.runtimeStatus).toBe('FAILED')
      expect(status.result.results[0]?.stepName).toBe('update-chart')
      expect(status.result.results[0]?.success).toBe(false)
      expect(status.result.results[0]?.metadata?.error).toContain('ECONNREFUSED')
    })

    test('leaves store and engine agreeing after a concurrent execute and cancel', { timeout: timeoutMs * 2 }, async () => {
      await setup(['update-chart'])
      for (let round = 0; round < 5; round++) {
        const runId = await loom.queue(M, 'billing-api')
        await Promise.allSettled([loom.execute(runId), loom.cancel(runId)])
        const status = await statusOf()
        expect(status === 'running' || status === 'not_started').toBe(true)
        if (status === 'running') {
          await until(async () => expect((await engine.progress(RUN))?.state).toBe('running'))
          await loom.cancel(runId)
        }
        await until(async () => expect((await engine.progress(RUN))?.state ?? 'gone').not.toBe('running'))
        const dispatchedBefore = worker.stepsOf(RUN).length
        await new Promise((r) => setTimeout(r, 100))
        expect(worker.stepsOf(RUN).length).toBe(dispatchedBefore)
        expect(await statusOf()).toBe('not_started')
      }
    })

    test('runs candidates independently', { timeout: timeoutMs * 2 }, async () => {
      await setup(['update-chart'])
      await loom.execute(await loom.queue(M, 'billing-api'))
      await loom.execute(await loom.queue(M, 'ledger'))
      await waitSteps(['update-chart'], 'app-chart__ledger')
      await step('update-chart', false, 'app-chart__ledger')
      await waitStatus('not_started', 'ledger')
      expect(await statusOf('billing-api')).toBe('running')
      await step('update-chart')
      await waitStatus('completed')
    })

    done()
  })
}
