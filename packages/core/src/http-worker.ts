import { dryRunAcrossApps } from './dry-runs'
import { LoomError, type LoomErrorCode } from './errors'
import { DEFAULT_LIMITS, readJson } from './limits'
import type { DryRunner, StepDispatcher, WorkerTarget } from './ports'
import { redactUrl } from './worker-urls'

/** The largest answer to a dry run read by default: 8 MiB. */
const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024

export interface HttpWorkerOptions {
  /**
   * Bearer token sent to workers, which refuse calls without it when they have one configured.
   * A function picks the token per call, so each worker is shown its own (with named worker
   * tokens: `(target) => identities.workerToken(target.owner)`). No token, or a function
   * answering `undefined`: no `Authorization` header at all.
   */
  token?: string | ((target: WorkerTarget) => string | undefined)
  /** Worker URLs by worker app, overriding the `workerUrl` a migration was announced with. */
  workerUrls?: Record<string, string>
  /** How long to wait for the worker to answer. Default 10 s for dispatch, 60 s for dry-run. */
  timeoutMs?: number
  /** The largest dry-run answer read; a longer one is cut off and the app's dry run fails. Default 8 MiB. */
  maxResponseBytes?: number
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

/** `text` with the credentials of every URL in it removed (a fetch error may quote the URL it was given). */
function redactAll(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/@?#\s]*@/gi, '$1')
}

/** The token for `target`, if any. */
function tokenFor(target: WorkerTarget, options: HttpWorkerOptions): string | undefined {
  return typeof options.token === 'function' ? options.token(target) : options.token
}

/**
 * POSTs `body` to `url`, answering the worker's 2xx response. Everything else is a `LoomError`
 * whose message says which worker app and URL (credentials removed) and what happened, and
 * never quotes what the worker sent: the URL may be any host the announcer could name, and its
 * answer is not Loom's to repeat. Redirects are not followed.
 */
async function post(url: string, body: unknown, target: WorkerTarget, options: HttpWorkerOptions, timeoutMs: number): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  const token = tokenFor(target, options)
  if (token) headers.authorization = `Bearer ${token}`
  const who = `worker app ${target.workerApp} at ${redactUrl(url)}`
  let response: Response
  try {
    response = await (options.fetch ?? fetch)(url, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    })
  } catch (error) {
    const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : redactAll((error as Error).message)
    throw new LoomError('unavailable', `${who} could not be reached: ${reason}`, { cause: error })
  }
  // Runtimes that follow the Fetch standard to the letter hand a manual redirect back as an opaque response of status 0.
  const redirected = response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400)
  if (redirected || !response.ok) {
    await response.body?.cancel().catch(() => {})
    const message = redirected
      ? `${who} answered ${response.status ? `${response.status}, ` : ''}a redirect, which Loom does not follow: announce the worker's final URL`
      : `${who} answered ${response.status}`
    throw new LoomError(redirected ? 'invalid' : refusalCode(response.status), message, { details: { workerStatus: response.status } })
  }
  return response
}

/**
 * Dispatches steps with `POST {workerUrl}/steps/dispatch`. The default dispatcher. A worker's
 * 2xx is its acceptance; 400, 401/403, 404 and 413 are its refusal (`invalid`,
 * `unauthorized`, `not_found`, `too_large`), a redirect is refused (`invalid`, not followed),
 * anything else or no answer `unavailable`. What the worker sent with a refusal is never
 * repeated: the message names the status, the worker app and its URL.
 *
 * @example
 * createLoom({ store, engine, dispatcher: httpDispatcher({ token: process.env.LOOM_WORKER_TOKEN }) })
 */
export function httpDispatcher(options: HttpWorkerOptions = {}): StepDispatcher {
  return {
    async dispatch(target, request) {
      const url = `${baseUrlOf(target.workerApp, target.workerUrl, options)}/steps/dispatch`
      const response = await post(url, request, target, options, options.timeoutMs ?? 10_000)
      await response.body?.cancel()
    },
  }
}

/**
 * Asks for a dry run with `POST {workerUrl}/dry-run`: every distinct URL of the migration's
 * worker apps once (`workerUrls[app]`, else the announced `workerUrl`), at once, and merges
 * the answers step by step. The default dry-runner. As for dispatch, redirects are not
 * followed and a refusal's body is never repeated.
 *
 * @example
 * createLoom({ store, engine, dryRunner: httpDryRunner({ timeoutMs: 120_000 }) })
 */
export function httpDryRunner(options: HttpWorkerOptions = {}): DryRunner {
  return {
    dryRun(target, request) {
      // Apps served at one URL share its answer: each URL is asked once.
      const asked = new Map<string, Promise<unknown>>()
      const ask = async (url: string, workerApp: string) => {
        const to: WorkerTarget = {
          workerApp,
          ...(target.workerUrl ? { workerUrl: target.workerUrl } : {}),
          ...(target.owner ? { owner: target.owner } : {}),
        }
        const response = await post(url, request, to, options, options.timeoutMs ?? 60_000)
        const who = `worker app ${workerApp} at ${redactUrl(url)}`
        const bytes = await readCapped(response, options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES, who)
        try {
          return readJson(bytes, DEFAULT_LIMITS, 'body')
        } catch (error) {
          // The field and the reason only (UTF-8, depth, a list too long, not JSON): never the worker's text.
          const field = LoomError.is(error) ? String(error.details?.field ?? 'body') : 'body'
          throw new LoomError('unavailable', `${who} answered a dry run that is not JSON of the expected size (${field})`)
        }
      }
      return dryRunAcrossApps(target, request, (workerApp) => {
        const url = `${baseUrlOf(workerApp, target.workerUrl, options)}/dry-run`
        if (!asked.has(url)) asked.set(url, ask(url, workerApp))
        return asked.get(url)!
      })
    },
  }
}

/** The body of `response`, at most `maxBytes` of it: a longer one is cancelled, and the call is `unavailable`. */
async function readCapped(response: Response, maxBytes: number, who: string): Promise<Uint8Array> {
  const reader = response.body?.getReader()
  if (!reader) return new Uint8Array()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel().catch(() => {})
      throw new LoomError('unavailable', `${who} answered more than ${maxBytes} bytes (maxResponseBytes); the answer was not read`)
    }
    chunks.push(value)
  }
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}
