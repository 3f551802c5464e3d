import type { DryRunRequest, StepDefinition } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { defineMigration, type StepSpec } from './define-migration'
import { stackedDryRun } from './dry-run'

const repoFiles: Record<string, string> = {
  'apps/billing/values.yaml': 'chart: generic\nreplicas: 2\n',
}

function migrationOf(steps: StepSpec[]) {
  return defineMigration({
    id: 'app-chart',
    name: 'App chart',
    steps,
    discover: () => [],
    readFile: ({ repo, path }) => (repo === 'acme/gitops' ? repoFiles[path] : undefined),
  })
}

const requestOf = (steps: StepDefinition[]): DryRunRequest => ({
  migrationId: 'app-chart',
  candidate: { id: 'billing', metadata: { repoName: 'acme/gitops' } },
  steps,
})

const run = () => {}

describe('stackedDryRun', () => {
  it('runs each step on the files as the previous steps left them', async () => {
    const migration = migrationOf([
      {
        name: 'rename-chart',
        run,
        dryRun: async ({ files }) => {
          const before = await files.read('apps/billing/values.yaml')
          return [{ path: 'apps/billing/values.yaml', content: before!.replace('generic', 'billing') }]
        },
      },
      {
        name: 'scale',
        run,
        dryRun: async ({ files, config }) => [
          { path: 'apps/billing/values.yaml', content: (await files.read('apps/billing/values.yaml'))!.replace('2', config.replicas!) },
          { path: 'charts/billing/Chart.yaml', content: 'name: billing\n' },
        ],
      },
    ])
    const result = await stackedDryRun({
      migration,
      app: 'charts',
      signal: new AbortController().signal,
      request: requestOf([
        { name: 'rename-chart', workerApp: 'charts' },
        { name: 'scale', workerApp: 'charts', config: { replicas: '3' } },
      ]),
    })
    expect(result.steps).toEqual([
      {
        stepName: 'rename-chart',
        skipped: false,
        files: [
          {
            path: 'apps/billing/values.yaml',
            repo: 'acme/gitops',
            before: 'chart: generic\nreplicas: 2\n',
            after: 'chart: billing\nreplicas: 2\n',
          },
        ],
      },
      {
        stepName: 'scale',
        skipped: false,
        files: [
          {
            path: 'apps/billing/values.yaml',
            repo: 'acme/gitops',
            before: 'chart: billing\nreplicas: 2\n',
            after: 'chart: billing\nreplicas: 3\n',
          },
          { path: 'charts/billing/Chart.yaml', repo: 'acme/gitops', after: 'name: billing\n' },
        ],
      },
    ])
  })

  it('skips steps of other worker apps and manual-review steps, and lists no files for a step without dryRun', async () => {
    const migration = migrationOf([
      { name: 'edit', run },
      { name: 'review', config: { type: 'manual-review' } },
      { name: 'deploy', workerApp: 'deployer', run },
    ])
    const result = await stackedDryRun({
      migration,
      app: 'charts',
      signal: new AbortController().signal,
      request: requestOf([
        { name: 'edit', workerApp: 'charts' },
        { name: 'review', workerApp: 'charts', config: { type: 'manual-review' } },
        { name: 'deploy', workerApp: 'deployer-elsewhere' },
        { name: 'unknown', workerApp: 'charts' },
      ]),
    })
    expect(result.steps).toEqual([
      { stepName: 'edit', skipped: false, files: [] },
      { stepName: 'review', skipped: true },
      { stepName: 'deploy', skipped: true },
      { stepName: 'unknown', skipped: true },
    ])
  })

  it('leaves out files a step returns unchanged', async () => {
    const migration = migrationOf([
      {
        name: 'noop',
        run,
        dryRun: async ({ files }) => [{ path: 'apps/billing/values.yaml', content: (await files.read('apps/billing/values.yaml'))! }],
      },
    ])
    const result = await stackedDryRun({
      migration,
      app: 'charts',
      signal: new AbortController().signal,
      request: requestOf([{ name: 'noop', workerApp: 'charts' }]),
    })
    expect(result.steps).toEqual([{ stepName: 'noop', skipped: false, files: [] }])
  })

  it('reports a failing dryRun as the step error and does not preview the steps after it', async () => {
    const migration = migrationOf([
      { name: 'first', run, dryRun: () => [{ path: 'a.txt', content: 'a' }] },
      {
        name: 'broken',
        run,
        dryRun: () => {
          throw new Error('values.yaml has no chart key')
        },
      },
      { name: 'last', run, dryRun: () => [{ path: 'b.txt', content: 'b' }] },
    ])
    const result = await stackedDryRun({
      migration,
      app: 'charts',
      signal: new AbortController().signal,
      request: requestOf(['first', 'broken', 'last'].map((name) => ({ name, workerApp: 'charts' }))),
    })
    expect(result.steps).toEqual([
      { stepName: 'first', skipped: false, files: [{ path: 'a.txt', repo: 'acme/gitops', after: 'a' }] },
      { stepName: 'broken', skipped: false, error: 'values.yaml has no chart key' },
      { stepName: 'last', skipped: false, error: 'not previewed: step "broken" failed its dry run' },
    ])
  })
})
