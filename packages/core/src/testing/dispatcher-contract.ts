import { describe, expect } from 'vitest'
import type { LoomErrorCode } from '../errors'
import type { StepDispatcher } from '../ports'
import type { DispatchStepRequest } from '../schemas'
import { type ContractOptions, contractTests } from './contract-test'
import { expectLoomError, transportUnderTest, type TransportFixture } from './fakes'

/** Builds the dispatcher and the fixture's worker endpoints on one transport; `close` ends both. */
export type DispatcherFactory = (fixture: TransportFixture) => Promise<{ dispatcher: StepDispatcher; close?: () => Promise<void> }>

export interface DispatcherContractOptions extends ContractOptions {
  /** The answer timeout the transport is built with (`fixture.timeoutMs`). Default 1 s. */
  timeoutMs?: number
}

/** A request with every optional field set, so a transport that drops or renames one fails. */
const request: DispatchStepRequest = {
  migrationId: 'app-chart',
  runId: 'app-chart__billing-api',
  stepName: 'bump-chart',
  candidate: {
    id: 'billing-api',
    kind: 'application',
    metadata: { team: 'payments', repoName: 'acme/billing-api' },
    state: { chart: 'generic' },
    files: [{ name: 'values', repo: 'gitops', files: [{ path: 'apps/billing-api/values.yaml', url: 'https://git.example/values.yaml' }] }],
  },
  config: { chart: 'app', version: '2.1.0' },
  callbackId: 'app-chart__billing-api',
  eventName: 'step-completed:bump-chart',
}

/** What each refusal of a worker is to the engine: its own code, except `conflict`, which is the run host's. */
const REFUSALS: Array<[answer: 'invalid' | 'unauthorized' | 'not_found' | 'too_large' | 'conflict', code: LoomErrorCode]> = [
  ['invalid', 'invalid'],
  ['unauthorized', 'unauthorized'],
  ['not_found', 'not_found'],
  ['too_large', 'too_large'],
  ['conflict', 'invalid'],
]

/**
 * The `StepDispatcher` contract, against fake worker endpoints on the transport that answer
 * as each test scripts: a dispatch resolves once the worker of the step's app accepted the
 * exact request; it is `unavailable` when nobody is there, nobody answers in time or the
 * worker crashes; a refusal keeps its code (`invalid`, `unauthorized`, `not_found`,
 * `too_large`) and comes at once, asked once; a wrong or missing token is `unauthorized`;
 * nothing is ever `conflict`.
 *
 * @example
 * dispatcherContract('mqttDispatcher', async ({ worker, workerApps, token, workerToken, timeoutMs }) => {
 *   const receivers = workerApps.map((workerApp) =>
 *     onDispatch(workerClient, { workerApp, token: workerToken, handler: (request) => worker.dispatch(workerApp, request) }),
 *   )
 *   await Promise.all(receivers.map((r) => r.ready))
 *   const dispatcher = mqttDispatcher(serverClient, { token, timeoutMs })
 *   return { dispatcher, close: async () => { await dispatcher.close(); await Promise.all(receivers.map((r) => r.stop())) } }
 * })
 */
export function dispatcherContract(name: string, factory: DispatcherFactory, options: DispatcherContractOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 1_000
  describe(`StepDispatcher contract: ${name}`, () => {
    const { test, done } = contractTests(name, options)
    const open = transportUnderTest(factory, { workerApps: ['charts', 'values'], timeoutMs })

    test('resolves once the worker accepted the step, having handed it the exact request', async () => {
      const { dispatcher, worker } = await open()
      await dispatcher.dispatch({ workerApp: 'charts' }, request)
      expect(worker.dispatches).toEqual([{ workerApp: 'charts', request }])
    })

    test('reaches only the worker of the target worker app', async () => {
      const { dispatcher, worker } = await open()
      await dispatcher.dispatch({ workerApp: 'values' }, { ...request, stepName: 'update-values' })
      await dispatcher.dispatch({ workerApp: 'charts' }, request)
      expect(worker.dispatches.map((d) => [d.workerApp, d.request.stepName])).toEqual([
        ['values', 'update-values'],
        ['charts', 'bump-chart'],
      ])
    })

    test('does not resolve before the worker accepts: no answer in time is unavailable', { timeout: timeoutMs * 5 + 5_000 }, async () => {
      const { dispatcher, worker } = await open()
      worker.answers.charts = 'silent'
      let settled = false
      const dispatched = dispatcher.dispatch({ workerApp: 'charts' }, request).finally(() => {
        settled = true
      })
      await new Promise((resolve) => setTimeout(resolve, timeoutMs / 2))
      expect(settled).toBe(false)
      await expectLoomError(dispatched, 'unavailable')
      expect(worker.dispatches).toHaveLength(1)
    })

    test('is unavailable when no worker serves the worker app', { timeout: timeoutMs * 5 + 5_000 }, async () => {
      const { dispatcher, worker } = await open()
      await expectLoomError(dispatcher.dispatch({ workerApp: 'nobody' }, request), 'unavailable')
      expect(worker.dispatches).toEqual([])
    })

    test('is unavailable when the worker fails while handling the step', async () => {
      const { dispatcher, worker } = await open()
      worker.answers.charts = 'crash'
      await expectLoomError(dispatcher.dispatch({ workerApp: 'charts' }, request), 'unavailable')
    })

    for (const [answer, code] of REFUSALS) {
      test(`a worker refusing with ${answer} is ${code}, at once and asked once`, async () => {
        const { dispatcher, worker } = await open()
        worker.answers.charts = answer
        const started = Date.now()
        const error = await expectLoomError(dispatcher.dispatch({ workerApp: 'charts' }, request), code)
        expect(Date.now() - started).toBeLessThan(timeoutMs)
        expect(error.code).not.toBe('conflict')
        expect(worker.dispatches).toHaveLength(1)
      })
    }

    test('is unauthorized, without handing the step on, when the worker requires a token Loom does not send or sends wrong', async () => {
      const { dispatcher: anonymous, worker: anonymousWorker } = await open({ workerToken: 'w0rker' })
      const { dispatcher: wrong, worker: wrongWorker } = await open({ workerToken: 'w0rker', token: 'guess' })
      const started = Date.now()
      await expectLoomError(anonymous.dispatch({ workerApp: 'charts' }, request), 'unauthorized')
      await expectLoomError(wrong.dispatch({ workerApp: 'charts' }, request), 'unauthorized')
      expect(Date.now() - started).toBeLessThan(timeoutMs * 2)
      expect([...anonymousWorker.dispatches, ...wrongWorker.dispatches]).toEqual([])
    })

    test('is accepted with the token the worker requires', async () => {
      const { dispatcher, worker } = await open({ workerToken: 'w0rker', token: 'w0rker' })
      await dispatcher.dispatch({ workerApp: 'charts' }, request)
      expect(worker.dispatches).toEqual([{ workerApp: 'charts', request }])
    })
    done()
  })
}
