import { dryRunAcrossApps } from './dry-runs'
import { LoomError, type LoomErrorCode } from './errors'
import type { DryRunner, StepDispatcher } from './ports'

export interface HttpWorkerOptions {
  /** Bearer token sent to workers, which refuse calls without it when they have one configured. */
  token?: string
  /** Worker URLs by worker app, overriding the `workerUrl` a migration was announced with. */
  workerUrls?: Record<string, string>
  /** How long to wait for the worker to answer. Default 10 s for dispatch, 60 s for dry-run. */
  timeoutMs?: number
  /** The fetch to use; defaults to the global one. */
  fetch?: typeof fetch
}

/** The worker app's base URL: the one configured for it, else the one its migration was announced with. */
function baseUrlOf(workerApp: string, workerUrl: string | undefined, options: HttpWorkerOptions): string {
  const base = options.workerUrls?.[workerApp] || workerUrl
  if (!base) {
    throw new LoomError('unavailable', `no URL for worker app ${workerApp}: announce the migration with workerUrl or configure workerUrls`)
  }
  return base.replace(/\/+$/, '')
}

/**
 * The one reading of a worker's HTTP status. A 4xx is a refusal that retrying will not
 * change; a 5xx, 408, 429 (or no answer) may pass. `conflict` is never used: for the engine
 * it means "the run went stale", so a worker's 409 is `invalid`.
 */
function refusalCode(status: number): LoomErrorCode {
  if (status === 401 || status === 403) return 'unauthorized'
  if (status === 404) return 'not_found'
  if (status === 413) return 'too_large'
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) return 'invalid'
  return 'unavailable'
}

async function post(url: string, body: unknown, options: HttpWorkerOptions, timeoutMs: number): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (options.token) headers.authorization = `Bearer ${options.token}`
  let response: Response
  try {
    response = await (options.fetch ?? fetch)(url, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    })
  } catch (error) {
    throw new LoomError('unavailable', `worker at ${url} could not be reached: ${(error as Error).message}`, { cause: error })
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '')
    const message = `worker at ${url} answered ${response.status}${text ? `: ${text.slice(0, 300)}` : ''}`
    throw new LoomError(refusalCode(response.status), message, { details: { workerStatus: response.status } })
  }
  return response
}

/**
 * Dispatches steps with `POST {workerUrl}/steps/dispatch`. The default dispatcher. A worker's
 * 2xx is its acceptance; 400, 401/403, 404 and 413 are its refusal (`invalid`,
 * `unauthorized`, `not_found`, `too_large`), anything else or no answer `unavailable`.
 *
 * @example
 * createLoom({ store, engine, dispatcher: httpDispatcher({ token: process.env.LOOM_WORKER_TOKEN }) })
 */
export function httpDispatcher(options: HttpWorkerOptions = {}): StepDispatcher {
  return {
    async dispatch(target, request) {
      const url = `${baseUrlOf(target.workerApp, target.workerUrl, options)}/steps/dispatch`
      const response = await post(url, request, options, options.timeoutMs ?? 10_000)
      await response.body?.cancel()
    },
  }
}

/**
 * Asks for a dry run with `POST {workerUrl}/dry-run`: every distinct URL of the migration's
 * worker apps once (`workerUrls[app]`, else the announced `workerUrl`), at once, and merges
 * the answers step by step. The default dry-runner.
 *
 * @example
 * createLoom({ store, engine, dryRunner: httpDryRunner({ timeoutMs: 120_000 }) })
 */
export function httpDryRunner(options: HttpWorkerOptions = {}): DryRunner {
  return {
    dryRun(target, request) {
      // Apps served at one URL share its answer: each URL is asked once.
      const asked = new Map<string, Promise<unknown>>()
      const ask = async (url: string) => {
        const response = await post(url, request, options, options.timeoutMs ?? 60_000)
        try {
          return await response.json()
        } catch {
          throw new LoomError('unavailable', `worker at ${url} answered a dry run that is not JSON`)
        }
      }
      return dryRunAcrossApps(target, request, (workerApp) => {
        const url = `${baseUrlOf(workerApp, target.workerUrl, options)}/dry-run`
        if (!asked.has(url)) asked.set(url, ask(url))
        return asked.get(url)!
      })
    },
  }
}
