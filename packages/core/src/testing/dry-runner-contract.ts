import { describe, expect } from 'vitest'
import type { DryRunner } from '../ports'
import type { DryRunRequest } from '../schemas'
import { type ContractOptions, contractTests } from './contract-test'
import { expectLoomError, scriptedDiff, transportUnderTest, type TransportFixture, type WorkerAnswer } from './fakes'

/** Builds the dry-runner and the fixture's worker endpoints on one transport; `close` ends both. */
export type DryRunnerFactory = (fixture: TransportFixture) => Promise<{ dryRunner: DryRunner; close?: () => Promise<void> }>

export interface DryRunnerContractOptions extends ContractOptions {
  /** The answer timeout the transport is built with (`fixture.timeoutMs`). Default 1 s. */
  timeoutMs?: number
}

/** Three steps of three worker apps; `reviewers` has only a manual-review step. */
const request: DryRunRequest = {
  migrationId: 'app-chart',
  candidate: { id: 'billing-api', kind: 'application', metadata: { team: 'payments' } },
  steps: [
    { name: 'bump-chart', workerApp: 'charts', config: { chart: 'app' } },
    { name: 'review', workerApp: 'reviewers', config: { type: 'manual-review', instructions: 'Check the diff' } },
    { name: 'update-values', workerApp: 'values', files: ['values.yaml'] },
  ],
}
const ALL_APPS = ['charts', 'reviewers', 'values']
const diffOf = (workerApp: string, stepName: string) => [scriptedDiff(workerApp, 'billing-api', stepName)]

const FAILURES: WorkerAnswer[] = ['invalid', 'unauthorized', 'not_found', 'too_large', 'conflict', 'crash', 'silent', 'malformed']

/**
 * The `DryRunner` contract, against fake worker endpoints on the transport that answer as
 * each test scripts: one entry per step of the request, in order, merged across the
 * migration's worker apps (a worker's diff wins over another's `skipped`, manual-review steps
 * are skipped and their apps not asked); a worker app that fails leaves an `error` on its
 * steps; `unavailable` naming the worker apps in `details.dependency` when none answered,
 * whatever they refused with — a worker refusing Loom's token is never `unauthorized`.
 *
 * @example
 * dryRunnerContract('mqttDryRunner', async ({ worker, workerApps, token, workerToken, timeoutMs }) => {
 *   const receivers = workerApps.map((workerApp) =>
 *     serveDryRun(workerClient, { workerApp, token: workerToken, handler: (request) => worker.dryRun(workerApp, request) }),
 *   )
 *   await Promise.all(receivers.map((r) => r.ready))
 *   const dryRunner = mqttDryRunner(serverClient, { token, timeoutMs })
 *   return { dryRunner, close: async () => { await dryRunner.close(); await Promise.all(receivers.map((r) => r.stop())) } }
 * })
 */
export function dryRunnerContract(name: string, factory: DryRunnerFactory, options: DryRunnerContractOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 1_000
  const slow = { timeout: timeoutMs * 5 + 5_000 }
  describe(`DryRunner contract: ${name}`, () => {
    const { test, done } = contractTests(name, options)
    const open = transportUnderTest(factory, { workerApps: ALL_APPS, timeoutMs })
    const target = { workerApps: ALL_APPS }

    test('returns one entry per step, in order, merged across the worker apps, manual review skipped', async () => {
      const { dryRunner } = await open()
      expect(await dryRunner.dryRun(target, request)).toEqual({
        steps: [
          { stepName: 'bump-chart', skipped: false, files: diffOf('charts', 'bump-chart') },
          { stepName: 'review', skipped: true },
          { stepName: 'update-values', skipped: false, files: diffOf('values', 'update-values') },
        ],
      })
    })

    test('keeps the request’s order and drops entries for steps it did not ask about', async () => {
      const { dryRunner, worker } = await open()
      worker.answers = { charts: 'scrambled', values: 'scrambled' }
      expect((await dryRunner.dryRun(target, request)).steps.map((s) => [s.stepName, s.skipped])).toEqual([
        ['bump-chart', false],
        ['review', true],
        ['update-values', false],
      ])
    })

    test('asks each worker app once with the exact request, and no app whose steps are all manual review', async () => {
      const { dryRunner, worker } = await open()
      await dryRunner.dryRun(target, request)
      const asked = [...worker.dryRuns].sort((a, b) => a.workerApp.localeCompare(b.workerApp))
      expect(asked).toEqual([
        { workerApp: 'charts', request },
        { workerApp: 'values', request },
      ])
    })

    test('takes a worker’s diff over another’s skipped, whichever app the step names', async () => {
      const { dryRunner, worker } = await open()
      // `values` skips its own step; `charts` handles it as well as its own.
      worker.handles = { charts: ['bump-chart', 'update-values'], values: [] }
      expect((await dryRunner.dryRun(target, request)).steps).toEqual([
        { stepName: 'bump-chart', skipped: false, files: diffOf('charts', 'bump-chart') },
        { stepName: 'review', skipped: true },
        { stepName: 'update-values', skipped: false, files: diffOf('charts', 'update-values') },
      ])
    })

    test('marks a step no worker handles as skipped', async () => {
      const { dryRunner, worker } = await open()
      worker.handles = { charts: ['bump-chart'], values: [] }
      expect((await dryRunner.dryRun(target, request)).steps[2]).toEqual({ stepName: 'update-values', skipped: true })
    })

    test('leaves the failure of a worker app on its steps while the others answer', slow, async () => {
      const { dryRunner, worker } = await open()
      worker.answers.values = 'crash'
      const { steps } = await dryRunner.dryRun(target, request)
      expect(steps.slice(0, 2)).toEqual([
        { stepName: 'bump-chart', skipped: false, files: diffOf('charts', 'bump-chart') },
        { stepName: 'review', skipped: true },
      ])
      expect(steps[2]).toMatchObject({ stepName: 'update-values', skipped: false, error: expect.stringMatching(/\S/) })
      expect(steps[2]!.files).toBeUndefined()
    })

    for (const answer of FAILURES) {
      test(`is unavailable naming the worker app when the only one answers ${answer}`, slow, async () => {
        const { dryRunner, worker } = await open()
        worker.answers.charts = answer
        const error = await expectLoomError(
          dryRunner.dryRun({ workerApps: ['charts'] }, { ...request, steps: [request.steps[0]!] }),
          'unavailable',
        )
        expect(error.details?.dependency).toBe('worker app charts')
        expect(worker.dryRuns).toHaveLength(1)
      })
    }

    test('is unavailable naming every worker app when none answers', slow, async () => {
      const { dryRunner, worker } = await open()
      worker.answers = { charts: 'silent', values: 'unauthorized' }
      const error = await expectLoomError(dryRunner.dryRun(target, request), 'unavailable')
      expect(error.details?.dependency).toBe('worker apps charts, values')
    })

    test('is unavailable, never unauthorized, when the workers refuse Loom’s token or its absence', async () => {
      const { dryRunner: anonymous } = await open({ workerToken: 'w0rker' })
      const { dryRunner: wrong } = await open({ workerToken: 'w0rker', token: 'guess' })
      for (const dryRunner of [anonymous, wrong]) {
        const error = await expectLoomError(dryRunner.dryRun(target, request), 'unavailable')
        expect(error.details?.dependency).toBe('worker apps charts, values')
      }
    })

    test('answers with the token the workers require', async () => {
      const { dryRunner } = await open({ workerToken: 'w0rker', token: 'w0rker' })
      expect((await dryRunner.dryRun(target, request)).steps.map((s) => s.skipped)).toEqual([false, true, false])
    })

    test('is unavailable when no worker serves the migration’s worker apps', slow, async () => {
      const { dryRunner } = await open({ workerApps: [] })
      const error = await expectLoomError(dryRunner.dryRun(target, request), 'unavailable')
      expect(error.details?.dependency).toBe('worker apps charts, values')
    })

    test('skips every step of a migration that is all manual review, asking no worker', async () => {
      const { dryRunner, worker } = await open()
      const review = { ...request, steps: [request.steps[1]!] }
      expect(await dryRunner.dryRun({ workerApps: ['reviewers'] }, review)).toEqual({ steps: [{ stepName: 'review', skipped: true }] })
      expect(worker.dryRuns).toEqual([])
    })

    done()
  })
}
