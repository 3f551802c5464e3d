import type { Candidate, MigrationAnnouncement } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { setup } from '../test/helpers'

/**
 * API 0.2 fidelity over HTTP: clients written against 0.2 decide "failed" from a step's
 * `success` before they look at `metadata.phase`, and read the candidate from the step
 * results. A run is driven to its manual-review step and approved, through `app.request`
 * on `loomApp(createLoom({ memoryStore(), localEngine() }))` with a fake worker.
 */
const M = 'chart-upgrade'
const INSTRUCTIONS = 'Check the diff in the pull request, then approve'
const candidate: Candidate = {
  id: 'billing-api',
  kind: 'application',
  metadata: { team: 'payments', repoName: 'acme/billing-api' },
  state: { chart: 'generic', chartVersion: '1.2.0' },
  files: [
    {
      name: 'values',
      repo: 'acme/gitops',
      files: [{ path: 'apps/billing-api/values.yaml', url: 'https://git.example/acme/gitops/apps/billing-api/values.yaml' }],
    },
  ],
}
const migration: MigrationAnnouncement = {
  id: M,
  name: 'Move to the app chart',
  workerUrl: 'http://127.0.0.1:9/worker',
  steps: [
    { name: 'update-chart', workerApp: 'charts', config: { chart: 'app' } },
    { name: 'review', workerApp: 'charts', config: { type: 'manual-review', instructions: INSTRUCTIONS } },
  ],
  candidates: [candidate],
}

let t: Awaited<ReturnType<typeof setup>>
afterEach(async () => {
  await t?.close()
})

describe('API 0.2: a run waiting at its manual-review step', () => {
  it('shows the review step as success with phase awaiting_review, the instructions and the full candidate; approving completes it', async () => {
    t = await setup()
    expect((await t.call('POST', '/registry/announce', migration)).status).toBe(200)
    const queued = await t.call('POST', `/migrations/${M}/queue`, { candidateId: candidate.id })
    expect(queued.status).toBe(202)
    const runId = queued.json.runId as string
    expect((await t.call('POST', `/runs/${runId}/execute`)).status).toBe(202)
    await eventually(() => expect(t.worker.stepsOf(runId)).toEqual(['update-chart']))
    expect(t.worker.dispatched[0]!.request.candidate).toEqual(candidate)

    // The worker reports with the candidate's id alone, as 0.2 workers may.
    const report = { stepName: 'update-chart', candidate: { id: candidate.id }, success: true }
    expect((await t.call('POST', `/event/${runId}`, report)).status).toBe(202)

    const updated = { stepName: 'update-chart', candidate, success: true }
    const awaitingReview = {
      stepName: 'review',
      candidate,
      success: true,
      metadata: { phase: 'awaiting_review', instructions: INSTRUCTIONS },
    }
    const status = await eventually(async () => {
      const res = await t.call('GET', `/status/${runId}`)
      expect(res.json.result.results).toHaveLength(2)
      return res
    })
    expect(status.status).toBe(200)
    expect(status.json).toEqual({
      instanceId: runId,
      runtimeStatus: 'RUNNING',
      result: { migrationId: M, status: 'running', results: [updated, awaitingReview] },
    })
    // The review step is never dispatched: it waits for an operator.
    expect(t.worker.stepsOf(runId)).toEqual(['update-chart'])

    const run = await t.call('GET', `/runs/${runId}`)
    expect(run.status).toBe(200)
    expect(run.json).toEqual({ runId, migrationId: M, candidate, status: 'running', steps: [updated, awaitingReview] })

    const approve = { stepName: 'review', candidate: { id: candidate.id }, success: true }
    expect((await t.call('POST', `/event/${runId}`, approve)).status).toBe(202)
    await eventually(async () => expect((await t.call('GET', `/status/${runId}`)).json.runtimeStatus).toBe('COMPLETED'))
    const done = await t.call('GET', `/runs/${runId}`)
    expect(done.json).toMatchObject({ candidate, status: 'completed' })
    expect(done.json.steps.map((s: { stepName: string; success: boolean }) => [s.stepName, s.success])).toEqual([
      ['update-chart', true],
      ['review', true],
    ])
    expect(done.json.steps.every((s: { candidate: Candidate }) => JSON.stringify(s.candidate) === JSON.stringify(candidate))).toBe(true)
    expect((await t.call('GET', `/migrations/${M}/candidates/${candidate.id}`)).json).toEqual({ ...candidate, status: 'completed', runId })
  })
})
