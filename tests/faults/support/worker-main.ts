/**
 * The counting worker, as a fault test starts it (and SIGKILLs it): `@loom/worker` serving
 * the 3-step migrations the test names, behind a middleware that logs every dispatch Loom
 * sends, before the SDK's own de-duplication, so that a dispatch sent twice is seen twice.
 * Each step is reported after a delay through the SDK (`worker.complete`, which echoes the
 * dispatch's attempt and retries while Loom answers 503 or cannot be reached); every call
 * to Loom is logged with its answer and duration. The log is a JSON-lines file written
 * synchronously, so it survives the process being killed.
 *
 * Environment: FAULTS_LOOM_URL, FAULTS_PORT, FAULTS_LOG, FAULTS_MIGRATIONS (comma-separated
 * ids), FAULTS_GENERATION (which start of the worker this is).
 * A step's `config.reportAfterMs` is `"<min>-<max>"` (a random delay in that range) or `"never"`;
 * with `config.reportOnTheSecond: "true"` each report waits further for the next whole second of
 * the clock, so that reports arrive in bursts a test can aim a fault at (`nextBurst`).
 */
import { appendFileSync } from 'node:fs'
import { serve } from '@hono/node-server'
import { LoomError } from '@loom/core'
import { createWorker, defineMigration } from '@loom/worker'
import { Hono } from 'hono'
import { STEP_NAMES, WORKER_APP, type LogEntry } from './log'

function env(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

const logPath = env('FAULTS_LOG')
const generation = Number(env('FAULTS_GENERATION'))
const port = Number(env('FAULTS_PORT'))
const write = (entry: LogEntry) => appendFileSync(logPath, `${JSON.stringify({ ...entry, generation, at: Date.now() })}\n`)

/** The fetch of the worker's Loom client: logs each call; a call that hangs is cut at 30 s (and shows as 30 s in the log). */
const loggingFetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
  const report = /\/event\/([^/]+)$/.exec(url.pathname)
  const body = report && typeof init?.body === 'string' ? (JSON.parse(init.body) as { stepName: string; attempt?: number }) : undefined
  const started = Date.now()
  const common = { kind: 'call' as const, path: url.pathname, runId: report?.[1], step: body?.stepName, attempt: body?.attempt }
  try {
    const response = await fetch(input, { ...init, signal: AbortSignal.timeout(30_000) })
    write({ ...common, status: response.status, ms: Date.now() - started })
    return response
  } catch (error) {
    write({ ...common, error: (error as Error).message, ms: Date.now() - started })
    throw error
  }
}

function delayOf(config: Record<string, string>): number | undefined {
  const spec = config.reportAfterMs ?? '500-1500'
  if (spec === 'never') return undefined
  const [min, max] = spec.split('-').map(Number) as [number, number]
  const delay = min + Math.random() * ((max ?? min) - min)
  if (config.reportOnTheSecond !== 'true') return delay
  return Math.ceil((Date.now() + delay) / 1000) * 1000 - Date.now()
}

const worker = createWorker({
  app: WORKER_APP,
  loomUrl: env('FAULTS_LOOM_URL'),
  fetch: loggingFetch,
  // Longer than any outage the tests inject (30 s): a report is retried until Loom takes it.
  retry: { attempts: 80, initialDelayMs: 200, maxDelayMs: 1_000 },
  onError: (error) => console.error(`[worker ${process.pid}]`, (error as Error).message),
  migrations: env('FAULTS_MIGRATIONS')
    .split(',')
    .map((id) =>
      defineMigration({
        id,
        name: id,
        steps: STEP_NAMES.map((name) => ({
          name,
          run: ({ runId, stepName, request, config }) => {
            const attempt = request.attempt
            write({ kind: 'handled', runId, step: stepName, attempt })
            const delay = delayOf(config)
            if (delay !== undefined) {
              setTimeout(() => {
                worker
                  .complete(runId, stepName, { success: true, metadata: { reportedBy: `generation-${generation}` } })
                  .then(() => write({ kind: 'report', runId, step: stepName, attempt, outcome: 'accepted' }))
                  .catch((error: unknown) =>
                    write({
                      kind: 'report',
                      runId,
                      step: stepName,
                      attempt,
                      outcome: LoomError.is(error) ? error.code : 'error',
                      error: (error as Error).message,
                    }),
                  )
              }, delay)
            }
            return worker.pending()
          },
        })),
        discover: () => [],
      }),
    ),
})

const app = new Hono()
  .use('/steps/dispatch', async (c, next) => {
    const request = (await c.req.raw
      .clone()
      .json()
      .catch(() => ({}))) as { runId?: string; stepName?: string; attempt?: number }
    const dispatch = { runId: request.runId, step: request.stepName, attempt: request.attempt }
    write({ kind: 'dispatch', ...dispatch })
    await next()
    write({ kind: 'answered', ...dispatch, status: c.res.status })
  })
  .route('/', worker.app)

serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () => console.log(`ready ${port}`))
