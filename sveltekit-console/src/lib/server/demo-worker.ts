/**
 * A stand-in for the example worker while `examples/worker` is being written: it announces
 * the app-chart migration with a dozen candidates, answers dry runs with real file diffs and
 * completes dispatched steps a moment later, all in this process.
 */
import type { Candidate, DispatchStepRequest, DryRunRequest, DryRunResult, Loom, StepDispatcher, DryRunner } from '@loom/core'

export const DEMO_MIGRATION_ID = 'app-chart-migration'

const APPS: Array<[id: string, team: string, version: string]> = [
  ['billing-api', 'payments', '1.4.2'],
  ['checkout-web', 'storefront', '1.6.0'],
  ['catalog-search', 'discovery', '1.3.9'],
  ['inventory-sync', 'supply', '1.5.1'],
  ['notification-hub', 'platform', '1.2.0'],
  ['orders-api', 'payments', '1.6.3'],
  ['pricing-engine', 'storefront', '1.4.0'],
  ['recommendations', 'discovery', '1.1.7'],
]

function candidateOf([id, team, version]: [string, string, string]): Candidate {
  const gitopsPath = `apps/${team}/${id}`
  return {
    id,
    kind: 'application',
    metadata: { repoName: `acme/gitops`, team, gitopsPath },
    state: { currentChart: 'app-chart', currentVersion: version },
    files: [
      {
        name: 'gitops',
        repo: 'acme/gitops',
        files: [
          { path: `${gitopsPath}/Chart.yaml`, url: `https://github.com/acme/gitops/blob/main/${gitopsPath}/Chart.yaml` },
          { path: `${gitopsPath}/values.yaml`, url: `https://github.com/acme/gitops/blob/main/${gitopsPath}/values.yaml` },
        ],
      },
    ],
  }
}

function chartYaml(id: string, version: string) {
  return ['apiVersion: v2', `name: ${id}`, 'version: 0.1.0', 'dependencies:', '  - name: app-chart', `    version: ${version}`, '    repository: oci://registry.acme.dev/charts', ''].join('\n')
}

function valuesYaml(id: string, v2: boolean) {
  const lines = [
    'app-chart:',
    `  image: registry.acme.dev/${id}`,
    '  replicas: 2',
    '  resources:',
    '    requests:',
    '      cpu: 100m',
    '      memory: 256Mi',
    v2 ? '  probes:' : '  livenessProbe:',
    v2 ? '    liveness:' : '    path: /healthz',
    v2 ? '      path: /healthz' : '  readinessProbe:',
    v2 ? '    readiness:' : '    path: /ready',
    ...(v2 ? ['      path: /ready'] : []),
    '  service:',
    '    port: 8080',
    '',
  ]
  return lines.join('\n')
}

export function demoWorker(options: { loom: () => Loom; delayMs?: number }) {
  const delayMs = options.delayMs ?? 600
  const candidates = APPS.map(candidateOf)
  const timers = new Set<ReturnType<typeof setTimeout>>()
  const later = (fn: () => Promise<void>, ms: number) => {
    const t = setTimeout(() => {
      timers.delete(t)
      fn().catch(() => {})
    }, ms)
    timers.add(t)
  }

  const dispatcher: StepDispatcher = {
    async dispatch(_target, request: DispatchStepRequest) {
      const loom = options.loom()
      const candidate = { id: request.candidate.id }
      if (request.stepName === 'open-pull-request') {
        const prUrl = `https://github.com/acme/gitops/pull/${1000 + Math.floor(Math.random() * 9000)}`
        later(() => loom.prOpened(request.runId, { stepName: request.stepName, candidate, success: true, metadata: { phase: 'open', prUrl } }), delayMs)
        later(() => loom.complete(request.runId, { stepName: request.stepName, candidate, success: true, metadata: { phase: 'merged', prUrl } }), delayMs * 2)
        return
      }
      later(() => loom.complete(request.runId, { stepName: request.stepName, candidate, success: true }), delayMs)
    },
  }

  const dryRunner: DryRunner = {
    async dryRun(_target, request: DryRunRequest): Promise<DryRunResult> {
      const id = request.candidate.id
      const version = request.candidate.state?.currentVersion ?? '1.0.0'
      const base = request.candidate.metadata?.gitopsPath ?? `apps/${id}`
      return {
        steps: request.steps.map((step) => {
          if (step.name === 'bump-chart') {
            return {
              stepName: step.name,
              skipped: false,
              files: [
                { path: `${base}/Chart.yaml`, repo: 'acme/gitops', before: chartYaml(id, version), after: chartYaml(id, '2.0.0') },
                { path: `${base}/values.yaml`, repo: 'acme/gitops', before: valuesYaml(id, false), after: valuesYaml(id, true) },
              ],
            }
          }
          if (step.name === 'add-migration-note') {
            return { stepName: step.name, skipped: false, files: [{ path: `${base}/MIGRATION.md`, repo: 'acme/gitops', after: `# ${id}\n\nMoved to app-chart 2.0.0.\n` }] }
          }
          return { stepName: step.name, skipped: false, files: [] }
        }),
      }
    },
  }

  return {
    dispatcher,
    dryRunner,
    async announce(loom: Loom) {
      await loom.announce({
        id: DEMO_MIGRATION_ID,
        name: 'App chart 2.0',
        description: 'Move every application to app-chart 2.0: new probe layout, chart version bump, one pull request per app.',
        steps: [
          { name: 'bump-chart', workerApp: 'app-chart', description: 'Bump the app-chart dependency to 2.0.0 and rewrite the probes in values.yaml.', files: ['Chart.yaml', 'values.yaml'] },
          { name: 'add-migration-note', workerApp: 'app-chart', description: 'Add a MIGRATION.md note beside the chart.' },
          { name: 'open-pull-request', workerApp: 'app-chart', description: 'Open a pull request in the GitOps repo and wait for it to merge.' },
        ],
      })
      await loom.submitCandidates(DEMO_MIGRATION_ID, candidates)
    },
    close() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
    },
  }
}
