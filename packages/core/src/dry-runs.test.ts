import type { DryRunRequest } from './schemas'
import { describe, expect, it } from 'vitest'
import { mergeDryRuns } from './dry-runs'

const request: DryRunRequest = {
  migrationId: 'app-chart',
  candidate: { id: 'billing-api' },
  steps: [
    { name: 'bump-chart', workerApp: 'charts' },
    { name: 'review', workerApp: 'loom', config: { type: 'manual-review' } },
    { name: 'update-values', workerApp: 'values' },
  ],
}
const file = (after: string) => ({ path: 'apps/billing-api/values.yaml', repo: 'gitops', before: 'chart: generic\n', after })

describe('mergeDryRuns', () => {
  it('takes each step from the worker app that did not skip it, in request order', () => {
    const merged = mergeDryRuns(request, [
      {
        workerApp: 'values',
        result: {
          steps: [
            { stepName: 'bump-chart', skipped: true },
            { stepName: 'update-values', skipped: false, files: [file('b')] },
          ],
        },
      },
      {
        workerApp: 'charts',
        result: {
          steps: [
            { stepName: 'bump-chart', skipped: false, files: [file('a')] },
            { stepName: 'update-values', skipped: true },
          ],
        },
      },
    ])
    expect(merged).toEqual({
      steps: [
        { stepName: 'bump-chart', skipped: false, files: [file('a')] },
        { stepName: 'review', skipped: true },
        { stepName: 'update-values', skipped: false, files: [file('b')] },
      ],
    })
  })

  it("prefers the step's own worker app when two apps answer for it", () => {
    const merged = mergeDryRuns(request, [
      { workerApp: 'values', result: { steps: [{ stepName: 'bump-chart', skipped: false, files: [file('from values')] }] } },
      { workerApp: 'charts', result: { steps: [{ stepName: 'bump-chart', skipped: false, files: [file('from charts')] }] } },
    ])
    expect(merged.steps[0]?.files?.[0]?.after).toBe('from charts')
  })

  it('takes a real answer from another app over the own app skipping it', () => {
    const merged = mergeDryRuns(request, [
      { workerApp: 'charts', result: { steps: [{ stepName: 'bump-chart', skipped: true }] } },
      { workerApp: 'values', result: { steps: [{ stepName: 'bump-chart', skipped: false, files: [file('x')] }] } },
    ])
    expect(merged.steps[0]).toEqual({ stepName: 'bump-chart', skipped: false, files: [file('x')] })
  })

  it("reports the failure of a step's app that did not answer, and keeps a step error a worker reported", () => {
    const merged = mergeDryRuns(request, [
      { workerApp: 'charts', result: { steps: [{ stepName: 'bump-chart', skipped: false, error: 'chart not found' }] } },
      { workerApp: 'values', error: 'dry run by worker app values: no answer within 100 ms' },
    ])
    expect(merged.steps).toEqual([
      { stepName: 'bump-chart', skipped: false, error: 'chart not found' },
      { stepName: 'review', skipped: true },
      { stepName: 'update-values', skipped: false, error: 'dry run by worker app values: no answer within 100 ms' },
    ])
  })

  it('marks a step no answer mentions as skipped', () => {
    expect(mergeDryRuns(request, [{ workerApp: 'charts', result: { steps: [] } }]).steps[0]).toEqual({
      stepName: 'bump-chart',
      skipped: true,
    })
  })
})
