import type { Loom, StepResult } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { branchOf, MIGRATION_ID } from '../src/index'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FIXTURES_DIR } from '../src/index'
import { startStack, testBroker, WORKER_TOKEN, type Stack } from './stack'

// Announce over MQTT (the real Mosquitto when MQTT_URL is set, aedes otherwise), everything
// else over HTTP on real sockets: Loom's API, the worker's dispatch and dry-run endpoints.

let broker: Awaited<ReturnType<typeof testBroker>>
let stack: Stack

beforeAll(async () => {
  broker = await testBroker()
})
afterAll(async () => {
  await broker.close()
})
beforeEach(async () => {
  stack = await startStack(broker.url)
  await stack.example.start()
})
afterEach(async () => {
  await stack.close()
})

const fixture = (path: string) => readFile(join(FIXTURES_DIR, path), 'utf8')

const statusOf = async (loom: Loom, candidateId: string) =>
  (await loom.listCandidates(MIGRATION_ID)).find((c) => c.id === candidateId)?.status

/** Waits until the run reports `stepName` with `phase`, and returns that report. */
const reported = (loom: Loom, runId: string, stepName: string, phase: string) =>
  eventually(async () => {
    const step = (await loom.getRun(runId)).steps?.find((s) => s.stepName === stepName)
    expect(step?.metadata?.phase).toBe(phase)
    return step as StepResult
  })

const post = (url: string) => fetch(url, { method: 'POST', headers: { authorization: `Bearer ${WORKER_TOKEN}` } })

describe('the example worker end to end', () => {
  it('announces over MQTT, discovers, previews the real diffs, and runs every step to completed', async () => {
    const { loom, example } = stack
    const migration = await loom.getMigration(MIGRATION_ID)
    expect(migration.workerUrl).toBe(stack.workerUrl)
    expect(migration.steps.map((s) => [s.name, s.workerApp, s.config?.type])).toEqual([
      ['create-app-chart', 'app-charts', undefined],
      ['switch-applications', 'app-charts', undefined],
      ['verify-sync', 'app-charts', 'manual-review'],
    ])
    // ledger is already on a chart of its own: it is not a candidate.
    expect(migration.candidates.map((c) => c.id)).toEqual(['billing-api', 'checkout', 'search-api'])
    const billing = migration.candidates.find((c) => c.id === 'billing-api')!
    expect(billing.metadata).toEqual({ repoName: 'acme/gitops', gitopsPath: 'apps/billing-api', team: 'payments' })
    expect(billing.state).toEqual({ currentChart: 'generic-app', chartVersion: '1.4.2' })
    expect(billing.files?.map((g) => [g.name, g.files.map((f) => f.path)])).toEqual([
      ['dev', ['apps/billing-api/dev/application.yaml']],
      ['prod', ['apps/billing-api/prod/application.yaml']],
    ])

    const runId = await loom.queue(MIGRATION_ID, 'billing-api')
    const preview = await loom.dryRun(MIGRATION_ID, 'billing-api')
    expect(
      preview.steps.map((s) => [s.stepName, s.skipped, s.files?.map((f) => [f.path, f.before === undefined ? 'new' : 'edit'])]),
    ).toEqual([
      [
        'create-app-chart',
        false,
        [
          ['charts/billing-api/Chart.yaml', 'new'],
          ['charts/billing-api/values.yaml', 'new'],
        ],
      ],
      [
        'switch-applications',
        false,
        [
          ['apps/billing-api/dev/application.yaml', 'edit'],
          ['apps/billing-api/prod/application.yaml', 'edit'],
        ],
      ],
      ['verify-sync', true, undefined],
    ])
    const prodEdit = preview.steps[1]!.files![1]!
    expect(prodEdit.before).toBe(await fixture('apps/billing-api/prod/application.yaml'))
    expect(prodEdit.after).toContain('    path: charts/billing-api\n')
    expect(prodEdit.after).toContain('replicas: 3 # peak load at month end')
    expect(prodEdit.after).toContain('    team: payments # paged on incidents')
    expect(prodEdit.after).not.toContain('chart: generic-app')
    expect(stack.dispatched).toEqual([])

    await loom.execute(runId)
    const chartPr = await reported(loom, runId, 'create-app-chart', 'open')
    expect(chartPr.metadata?.prUrl).toBe(`${stack.workerUrl}/prs/diff?branch=${encodeURIComponent(branchOf(runId, 'create-app-chart'))}`)
    expect(await (await fetch(chartPr.metadata!.prUrl!)).text()).toContain('+name: billing-api')
    expect(await statusOf(loom, 'billing-api')).toBe('running')
    expect((await post(`${stack.workerUrl}/prs/merge?branch=${encodeURIComponent(branchOf(runId, 'create-app-chart'))}`)).status).toBe(200)

    await reported(loom, runId, 'switch-applications', 'open')
    await example.repo.merge(branchOf(runId, 'switch-applications'))

    const review = await reported(loom, runId, 'verify-sync', 'awaiting_review')
    expect(review.metadata?.instructions).toContain('Synced and Healthy')
    // As API 0.2 recorded it: a review that waits is not a failure, and the result carries the whole candidate.
    expect(review).toMatchObject({ success: true, candidate: billing })
    await loom.complete(runId, { stepName: 'verify-sync', candidate: { id: 'billing-api' }, success: true })
    await eventually(async () => expect(await statusOf(loom, 'billing-api')).toBe('completed'))

    const run = await loom.getRun(runId)
    expect(run.steps?.map((s) => [s.stepName, s.success, s.metadata?.phase])).toEqual([
      ['create-app-chart', true, 'merged'],
      ['switch-applications', true, 'merged'],
      ['verify-sync', true, undefined],
    ])
    // The repository holds exactly what the dry run showed.
    for (const step of preview.steps) {
      for (const file of step.files ?? []) expect(await example.repo.read(file.path)).toBe(file.after)
    }
    expect(stack.dispatched.map((d) => d.stepName)).toEqual(['create-app-chart', 'switch-applications'])
  })

  it('fails the step when its pull request is closed unmerged; the candidate goes back to not_started', async () => {
    const { loom, example } = stack
    const runId = await loom.queue(MIGRATION_ID, 'checkout')
    await loom.execute(runId)
    await reported(loom, runId, 'create-app-chart', 'open')
    expect((await post(`${stack.workerUrl}/prs/close?branch=${encodeURIComponent(branchOf(runId, 'create-app-chart'))}`)).status).toBe(200)
    await eventually(async () => expect(await statusOf(loom, 'checkout')).toBe('not_started'))
    const status = await loom.runStatus(runId)
    expect(status.runtimeStatus).toBe('FAILED')
    const checkout = (await loom.getMigration(MIGRATION_ID)).candidates.find((c) => c.id === 'checkout')
    expect(status.result.results).toEqual([
      {
        stepName: 'create-app-chart',
        candidate: checkout,
        success: false,
        metadata: {
          phase: 'closed',
          prUrl: `${stack.workerUrl}/prs/diff?branch=${encodeURIComponent(branchOf(runId, 'create-app-chart'))}`,
          error: `pull request ${branchOf(runId, 'create-app-chart')} was closed without merging`,
        },
      },
    ])
    expect(await example.repo.read('charts/checkout/Chart.yaml')).toBeUndefined()
    expect(stack.dispatched.map((d) => d.stepName)).toEqual(['create-app-chart'])
  })

  it('cancels a run mid-way: a CancelledAttempt is recorded and a later merge does not revive the run', async () => {
    const { loom, example } = stack
    const runId = await loom.queue(MIGRATION_ID, 'search-api')
    await loom.execute(runId)
    await reported(loom, runId, 'create-app-chart', 'open')
    await loom.cancel(runId)
    expect(await statusOf(loom, 'search-api')).toBe('not_started')
    const migration = await loom.getMigration(MIGRATION_ID)
    expect(migration.cancelledAttempts).toEqual([
      {
        runId,
        candidateId: 'search-api',
        cancelledAt: expect.any(String),
        attempt: expect.any(Number),
        cancelledBy: { kind: 'system', name: 'loom' },
      },
    ])

    await example.repo.merge(branchOf(runId, 'create-app-chart'))
    // The worker reports the merge, Loom refuses it (the run is no longer running), and the worker lets go.
    await eventually(() => expect(example.pullRequests.open()).toEqual([]))
    expect(await statusOf(loom, 'search-api')).toBe('not_started')
    expect(stack.dispatched.map((d) => d.stepName)).toEqual(['create-app-chart'])
  })

  it('completes a step once when the worker and Loom restart mid-run: the accepted step is not sent again, the watcher reports it', async () => {
    const runId = await stack.loom.queue(MIGRATION_ID, 'billing-api')
    await stack.loom.execute(runId)
    await reported(stack.loom, runId, 'create-app-chart', 'open')
    const branch = branchOf(runId, 'create-app-chart')
    expect(await stack.example.repo.commitsAhead(branch)).toBe(1)

    // The worker goes away with the step in hand; Loom restarts too and resumes the run. The
    // worker had accepted the step, so Loom waits for its report instead of sending it again;
    // the new worker process, on the same data folder, watches the pull request it left open.
    await stack.restartWorker()
    await stack.restartLoom()
    expect((await stack.loom.runStatus(runId)).runtimeStatus).toBe('RUNNING')
    expect(stack.example.pullRequests.open().map((pr) => pr.branch)).toEqual([branch])
    expect(await stack.example.repo.commitsAhead(branch)).toBe(1)
    expect(await stack.example.repo.branches('loom/')).toEqual([branch])

    await stack.example.repo.merge(branch)
    await reported(stack.loom, runId, 'switch-applications', 'open')
    await stack.example.repo.merge(branchOf(runId, 'switch-applications'))
    await reported(stack.loom, runId, 'verify-sync', 'awaiting_review')
    await stack.loom.complete(runId, { stepName: 'verify-sync', candidate: { id: 'billing-api' }, success: true })
    await eventually(async () => expect(await statusOf(stack.loom, 'billing-api')).toBe('completed'))

    const run = await stack.loom.getRun(runId)
    expect(run.steps?.map((s) => [s.stepName, s.success])).toEqual([
      ['create-app-chart', true],
      ['switch-applications', true],
      ['verify-sync', true],
    ])
    expect(stack.dispatched.map((d) => d.stepName)).toEqual(['create-app-chart', 'switch-applications'])
    expect(await stack.example.repo.read('charts/billing-api/Chart.yaml')).toContain('name: billing-api')
  })
})
