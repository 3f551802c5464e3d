import type { Loom } from '@loom/core'
import { createWorker, type MqttTransport, type RetryOptions, type Worker } from '@loom/worker'
import { Hono } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { appChartMigration } from './app-chart'
import { MAIN, openGitOpsRepo, type GitOpsRepo } from './gitops'
import { pullRequests, type PullRequests } from './pull-requests'

/** The fixture GitOps repository, copied into the data folder on first start. */
export const FIXTURES_DIR = fileURLToPath(new URL('../fixtures/gitops', import.meta.url))

export interface ExampleWorkerOptions {
  /** Where the GitOps repository (`gitops.git`) and the open pull requests are kept. */
  dataDir: string
  /** Loom in this process (a service that embeds Loom, tests). Either this or `loomUrl`. */
  loom?: Loom
  /** Loom's HTTP API, e.g. `http://localhost:3000/api`. */
  loomUrl?: string
  /** Bearer token for calls to Loom and required on dispatches. */
  token?: string
  /** Where Loom reaches this worker's HTTP app (announced as `workerUrl`); also the base of pull request links. */
  url?: string
  /** The worker app name. Default `app-charts`. */
  app?: string
  /** Announce over MQTT instead of HTTP. */
  announce?: 'http' | MqttTransport
  /** Receive steps over MQTT instead of HTTP. */
  dispatch?: 'http' | MqttTransport
  /** Merge each pull request this long after it opens, so a demo runs to the end alone. Default: never. */
  autoMergeMs?: number
  /** How often open pull requests are checked. Default 1 s. */
  pollMs?: number
  /** `metadata.repoName` of the candidates. Default `acme/gitops`. */
  repoName?: string
  retry?: RetryOptions
  onError?: (error: unknown) => void
}

export interface ExampleWorker {
  worker: Worker
  /** The GitOps repository the migration edits. */
  repo: GitOpsRepo
  pullRequests: PullRequests
  /**
   * The worker's HTTP routes (`/steps/dispatch`, `/dry-run`, `/health`) plus the demo's pull
   * requests: `GET /prs` lists the open ones, `GET /prs/diff?branch=…` shows one,
   * `POST /prs/merge?branch=…` and `POST /prs/close?branch=…` merge or close it.
   */
  app: Hono
  fetch: (request: Request) => Response | Promise<Response>
  /** Starts watching pull requests, announces the migration and submits the discovered candidates. */
  start(): Promise<void>
  stop(): Promise<void>
}

/**
 * The example worker: the app-chart migration over a local GitOps repository created from
 * the fixture files in `dataDir`. Serve `fetch` on a port (see `bin.ts`) or mount `app` in a
 * server you already have, then `start()`.
 *
 * @example
 * import { serve } from '@hono/node-server'
 * import { createExampleWorker } from '@loom/example-worker'
 *
 * const example = await createExampleWorker({
 *   dataDir: '.loom-data/example-worker',
 *   loomUrl: 'http://localhost:3000/api',
 *   url: 'http://localhost:4000',
 *   autoMergeMs: 5_000,
 * })
 * serve({ fetch: example.fetch, port: 4000 })
 * await example.start()
 */
export async function createExampleWorker(options: ExampleWorkerOptions): Promise<ExampleWorker> {
  await mkdir(options.dataDir, { recursive: true })
  const repo = await openGitOpsRepo(join(options.dataDir, 'gitops.git'), FIXTURES_DIR)
  const onError = options.onError ?? ((error: unknown) => console.error('[example-worker]', error))
  const base = options.url?.replace(/\/+$/, '')
  const urlOf = (branch: string) => (base ? `${base}/prs/diff?branch=${encodeURIComponent(branch)}` : `file://${repo.dir}#${branch}`)
  const fileUrl = (path: string) => (base ? `${base}/files/${path}` : `file://${repo.dir}#${MAIN}:${path}`)

  let worker: Worker | undefined
  const prs = pullRequests({
    repo,
    stateFile: join(options.dataDir, 'open-pull-requests.json'),
    report: (runId, stepName, report) => worker!.complete(runId, stepName, report),
    urlOf,
    ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
    ...(options.autoMergeMs === undefined ? {} : { autoMergeMs: options.autoMergeMs }),
    onError,
  })

  worker = createWorker({
    app: options.app ?? 'app-charts',
    migrations: [
      appChartMigration({
        repo,
        pullRequests: prs,
        repoName: options.repoName ?? 'acme/gitops',
        gitopsUrl: 'https://git.acme.example/acme/gitops.git',
        fileUrl,
      }),
    ],
    ...(options.loom ? { loom: options.loom } : {}),
    ...(options.loomUrl ? { loomUrl: options.loomUrl } : {}),
    ...(options.token ? { token: options.token } : {}),
    ...(base ? { url: base } : {}),
    ...(options.announce ? { announce: options.announce } : {}),
    ...(options.dispatch ? { dispatch: options.dispatch } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
    onError,
  })

  const branchParam = (url: string) => new URL(url).searchParams.get('branch') ?? ''
  const requireBranch = async (branch: string) => {
    if (!branch.startsWith('loom/') || (await repo.head(branch)) === undefined) return false
    return true
  }
  const app = new Hono()
    .route('/', worker.app)
    .get('/prs', (c) => c.json({ open: prs.open() }))
    .get('/prs/diff', async (c) => {
      const branch = branchParam(c.req.url)
      if (!(await requireBranch(branch))) return c.json({ error: `no pull request ${branch}`, code: 'not_found' }, 404)
      return c.text(await repo.diff(branch))
    })
    .get('/files/*', async (c) => {
      const content = await repo.read(c.req.path.slice('/files/'.length))
      return content === undefined ? c.json({ error: 'no such file on main', code: 'not_found' }, 404) : c.text(content)
    })
    // Merging and closing change the repository: with a token, only its holder may.
    .use('/prs/:action{merge|close}', options.token ? bearerAuth({ token: options.token }) : async (_c, next) => next())
    .post('/prs/:action{merge|close}', async (c) => {
      const branch = branchParam(c.req.url)
      if (!(await requireBranch(branch))) return c.json({ error: `no pull request ${branch}`, code: 'not_found' }, 404)
      if (c.req.param('action') === 'merge') await repo.merge(branch)
      else await repo.close(branch)
      await prs.check()
      return c.json({ branch, action: c.req.param('action') })
    })

  return {
    worker,
    repo,
    pullRequests: prs,
    app,
    fetch: (request) => app.fetch(request),
    async start() {
      await prs.start()
      await worker!.start()
    },
    async stop() {
      await prs.stop()
      await worker!.stop()
    },
  }
}
