import * as v from 'valibot'
import { LoomError, type LoomErrorCode } from './errors'
import type { DryRunner, DryRunTarget, StepDispatcher } from './ports'
import { DryRunResultSchema } from './schemas'

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

function urlFor(target: { workerApp?: string; workerUrl?: string }, options: HttpWorkerOptions, path: string): string {
  const base = (target.workerApp && options.workerUrls?.[target.workerApp]) || target.workerUrl
  if (!base) {
    throw new LoomError(
      'unavailable',
      `no URL for worker app ${target.workerApp ?? '(unknown)'}: announce the migration with workerUrl or configure workerUrls`,
    )
  }
  return `${base.replace(/\/+$/, '')}${path}`
}

/**
 * A worker's 4xx is a refusal that retrying will not change; a 5xx (or no answer) may pass.
 * `conflict` is never used: for the engine it means "the run went stale".
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
 * Dispatches steps with `POST {workerUrl}/steps/dispatch`. The default dispatcher.
 *
 * @example
 * createLoom({ store, engine, dispatcher: httpDispatcher({ token: process.env.LOOM_WORKER_TOKEN }) })
 */
export function httpDispatcher(options: HttpWorkerOptions = {}): StepDispatcher {
  return {
    async dispatch(target, request) {
      const response = await post(urlFor(target, options, '/steps/dispatch'), request, options, options.timeoutMs ?? 10_000)
      await response.body?.cancel()
    },
  }
}

/**
 * Asks for a dry run with `POST {workerUrl}/dry-run` and checks the answer's shape. The
 * default dry-runner.
 *
 * @example
 * createLoom({ store, engine, dryRunner: httpDryRunner({ timeoutMs: 120_000 }) })
 */
export function httpDryRunner(options: HttpWorkerOptions = {}): DryRunner {
  return {
    async dryRun(target: DryRunTarget, request) {
      const url = urlFor(
        { workerApp: target.workerApps[0], ...(target.workerUrl ? { workerUrl: target.workerUrl } : {}) },
        options,
        '/dry-run',
      )
      const response = await post(url, request, options, options.timeoutMs ?? 60_000)
      let body: unknown
      try {
        body = await response.json()
      } catch {
        throw new LoomError('unavailable', `worker at ${url} answered a dry run that is not JSON`)
      }
      const result = v.safeParse(DryRunResultSchema, body)
      if (!result.success) {
        const issue = result.issues[0]
        throw new LoomError(
          'unavailable',
          `worker at ${url} answered an invalid dry run: ${v.getDotPath(issue) ?? 'body'}: ${issue.message}`,
        )
      }
      return result.output
    },
  }
}
