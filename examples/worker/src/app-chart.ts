import type { Candidate, FileGroup } from '@loom/core'
import { defineMigration, pending, type FileChange, type Migration, type StepContext, type StepOutcome } from '@loom/worker'
import { Pair, YAMLMap, isMap, isScalar, parseDocument, type Document } from 'yaml'
import type { GitOpsRepo } from './gitops'
import type { PullRequests } from './pull-requests'

/** The shared chart applications are moved away from. */
export const GENERIC_CHART = 'generic-app'
export const MIGRATION_ID = 'app-chart'

const APPLICATION_PATH = /^apps\/([^/]+)\/([^/]+)\/application\.yaml$/

/** Formatting that keeps the files' own style: no folding of long lines. */
const TO_STRING = { lineWidth: 0 } as const

/** The `spec.source` of an Argo CD Application still on the generic chart, or undefined. */
function genericSource(doc: Document): YAMLMap | undefined {
  if (doc.get('kind') !== 'Application') return undefined
  const source = doc.getIn(['spec', 'source'], true)
  if (!isMap(source) || source.get('chart') !== GENERIC_CHART) return undefined
  return source
}

/** Candidates: one per app with at least one environment on the generic chart, each environment a file group. */
export async function discoverApps(repo: GitOpsRepo, repoName: string, fileUrl: (path: string) => string): Promise<Candidate[]> {
  const byApp = new Map<string, { team?: string; version?: string; groups: FileGroup[] }>()
  for (const path of await repo.list('apps')) {
    const match = APPLICATION_PATH.exec(path)
    if (!match) continue
    const [, app, env] = match as unknown as [string, string, string]
    const doc = parseDocument((await repo.read(path)) ?? '')
    const source = genericSource(doc)
    if (doc.errors.length > 0 || !source) continue
    const entry = byApp.get(app) ?? { groups: [] }
    entry.team ??= String(doc.getIn(['metadata', 'labels', 'team']) ?? '') || undefined
    entry.version ??= String(source.get('targetRevision') ?? '')
    entry.groups.push({ name: env, repo: repoName, files: [{ path, url: fileUrl(path) }] })
    byApp.set(app, entry)
  }
  return [...byApp.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([app, { team, version, groups }]) => ({
      id: app,
      kind: 'application',
      metadata: { repoName, gitopsPath: `apps/${app}`, ...(team ? { team } : {}) },
      state: { currentChart: GENERIC_CHART, ...(version ? { chartVersion: version } : {}) },
      files: groups,
    }))
}

/** The application files of a candidate: its file groups, as discovered. */
const applicationPaths = (candidate: Candidate) => (candidate.files ?? []).flatMap((g) => g.files.map((f) => f.path))

/**
 * The new chart of `app`: a thin chart with the generic chart as its dependency, pinned to
 * the version the applications used, so nothing changes in the cluster on the day of the
 * switch, and the app can grow its own templates from there.
 */
export function appChartFiles(app: string, genericVersion: string, genericRepo: string): FileChange[] {
  const chart = [
    `# The chart of ${app}. It wraps the shared ${GENERIC_CHART} chart for now: values for it go`,
    `# under "${GENERIC_CHART}:" (see apps/${app}/<env>/application.yaml).`,
    'apiVersion: v2',
    `name: ${app}`,
    `description: ${app} on its own chart`,
    'type: application',
    'version: 0.1.0',
    'dependencies:',
    `  - name: ${GENERIC_CHART}`,
    `    version: ${genericVersion} # the version every environment used before the switch`,
    `    repository: ${genericRepo}`,
    '',
  ].join('\n')
  const values = [`# Defaults for every environment of ${app}; each application.yaml overrides them.`, `${GENERIC_CHART}: {}`, ''].join(
    '\n',
  )
  return [
    { path: `charts/${app}/Chart.yaml`, content: chart },
    { path: `charts/${app}/values.yaml`, content: values },
  ]
}

/**
 * Points one Argo CD Application at the app's own chart: `chart: generic-app` becomes
 * `path: charts/<app>` in the GitOps repository, and the Helm values move under the
 * dependency's key. Comments, key order and quoting are kept: the file is edited as a YAML
 * document, not re-serialised from data.
 */
export function switchApplication(text: string, options: { app: string; path: string; gitopsUrl: string }): string {
  const doc = parseDocument(text)
  if (doc.errors.length > 0) throw new Error(`${options.path}: not valid YAML: ${doc.errors[0]!.message}`)
  const source = genericSource(doc)
  if (!source) {
    const chart = doc.getIn(['spec', 'source', 'chart'])
    throw new Error(
      `${options.path}: spec.source.chart is ${chart === undefined ? 'missing' : `"${String(chart)}"`}, not ${GENERIC_CHART}; it changed since discovery`,
    )
  }
  const chartPair = source.items.find((pair) => isScalar(pair.key) && pair.key.value === 'chart')!
  chartPair.key = doc.createNode('path')
  chartPair.value = doc.createNode(`charts/${options.app}`)
  source.set('repoURL', options.gitopsUrl)
  const revision = source.get('targetRevision', true)
  if (isScalar(revision)) {
    revision.value = 'main'
    revision.comment = ` follows main: the chart version is pinned in charts/${options.app}/Chart.yaml`
  } else {
    source.set('targetRevision', 'main')
  }
  const helm = source.get('helm', true)
  const values = isMap(helm) ? helm.get('valuesObject', true) : undefined
  if (isMap(helm) && isMap(values)) {
    const wrapped = new YAMLMap()
    wrapped.items.push(new Pair(doc.createNode(GENERIC_CHART), values))
    helm.set('valuesObject', wrapped)
  }
  return doc.toString(TO_STRING)
}

export interface AppChartOptions {
  repo: GitOpsRepo
  pullRequests: PullRequests
  /** `metadata.repoName` of the candidates: the GitOps repository as a forge would name it. */
  repoName: string
  /** The URL Argo CD clones the GitOps repository from, written into the applications. */
  gitopsUrl: string
  /** A link to a file, for the candidates' file groups. */
  fileUrl: (path: string) => string
}

/** The branch ("pull request") a step of a run commits on. */
export const branchOf = (runId: string, stepName: string) => `loom/${runId}/${stepName}`

/**
 * The app-chart migration. Its steps open one "pull request" each (a branch of the GitOps
 * repository) and complete when it is merged, so they return `pending` and the
 * {@link PullRequests} watcher reports them. A step dispatched again finds its branch and
 * does not commit twice: the handlers are idempotent, as Loom requires.
 */
export function appChartMigration(options: AppChartOptions): Migration {
  const { repo, pullRequests } = options

  /** Opens the step's pull request with `changes` (unless it is open already) and waits for its merge. */
  const openPullRequest = async (context: StepContext, title: string, build: () => Promise<FileChange[]>): Promise<StepOutcome> => {
    const branch = branchOf(context.runId, context.stepName)
    const prUrl = pullRequests.urlOf(branch)
    if (await repo.isMerged(branch)) return { metadata: { phase: 'merged', prUrl, branch } }
    if ((await repo.head(branch)) === undefined) {
      const changes = await build()
      const current = await Promise.all(changes.map((c) => repo.read(c.path)))
      const changed = changes.filter((c, i) => current[i] !== c.content)
      if (changed.length === 0) return { metadata: { phase: 'merged', note: `already done on main` } }
      await repo.commit(
        branch,
        changed.map(({ path, content }) => ({ path, content })),
        `${title}\n\nLoom run ${context.runId}, step ${context.stepName}`,
      )
    }
    await pullRequests.watch({ runId: context.runId, stepName: context.stepName, branch, prUrl })
    return pending({ phase: 'open', prUrl, branch })
  }

  const chartChanges = (candidate: Candidate): FileChange[] =>
    appChartFiles(candidate.id, candidate.state?.chartVersion ?? '1.4.2', 'https://charts.acme.example/stable')

  const switchChanges = async (candidate: Candidate, read: (path: string) => Promise<string | undefined>) => {
    const changes: FileChange[] = []
    for (const path of applicationPaths(candidate)) {
      const text = await read(path)
      if (text === undefined) throw new Error(`${path}: not found in the GitOps repository`)
      changes.push({ path, content: switchApplication(text, { app: candidate.id, path, gitopsUrl: options.gitopsUrl }) })
    }
    return changes
  }

  return defineMigration({
    id: MIGRATION_ID,
    name: 'Applications: generic chart → own chart',
    description:
      `Moves each Argo CD application off the shared ${GENERIC_CHART} Helm chart onto a chart of its own in the ` +
      'GitOps repository: first the chart, then every environment switched to it, then a check in Argo CD.',
    steps: [
      {
        name: 'create-app-chart',
        description: `Add charts/<app> wrapping ${GENERIC_CHART} at the version in use (a pull request)`,
        files: ['charts/<app>/Chart.yaml', 'charts/<app>/values.yaml'],
        run: (context) =>
          openPullRequest(context, `${context.candidate.id}: add its own chart`, async () => chartChanges(context.candidate)),
        dryRun: ({ candidate }) => chartChanges(candidate),
      },
      {
        name: 'switch-applications',
        description: 'Point every environment’s Application at charts/<app>, values under the dependency (a pull request)',
        files: ['apps/<app>/<env>/application.yaml'],
        run: (context) =>
          openPullRequest(context, `${context.candidate.id}: deploy from its own chart`, () =>
            switchChanges(context.candidate, (p) => repo.read(p)),
          ),
        dryRun: ({ candidate, files }) => switchChanges(candidate, (p) => files.read(p)),
      },
      {
        name: 'verify-sync',
        description: 'An operator checks in Argo CD that every environment is Synced and Healthy',
        config: {
          type: 'manual-review',
          instructions:
            'Open Argo CD: each application of the app must be Synced and Healthy on charts/<app>. Approve, or reject to retry.',
        },
      },
    ],
    discover: () => discoverApps(repo, options.repoName, options.fileUrl),
    readFile: ({ repo: repoName, path }) => (repoName === options.repoName ? repo.read(path) : undefined),
  })
}
