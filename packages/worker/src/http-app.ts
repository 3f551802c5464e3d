import {
  DispatchStepRequestSchema,
  DryRunRequestSchema,
  LoomError,
  parse,
  type DispatchStepRequest,
  type DryRunRequest,
  type DryRunResult,
  type LoomErrorCode,
} from '@loom/core'
import { Hono, type Context, type MiddlewareHandler } from 'hono'

const STATUS: Record<LoomErrorCode, 400 | 401 | 404 | 409 | 413 | 503> = {
  invalid: 400,
  unauthorized: 401,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unavailable: 503,
}

const encoder = new TextEncoder()

/** Compares secrets through their SHA-256 digests, so the time taken says nothing about where they differ. */
async function tokensEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([a, b].map(async (s) => new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(s)))))
  let difference = 0
  for (let i = 0; i < x!.length; i++) difference |= x![i]! ^ y![i]!
  return difference === 0
}

function errorResponse(c: Context, error: unknown) {
  const loomError = LoomError.is(error)
    ? error
    : new LoomError('unavailable', `the worker failed: ${error instanceof Error ? error.message : String(error)}`)
  const headers: Record<string, string> = loomError.code === 'unauthorized' ? { 'WWW-Authenticate': 'Bearer realm="loom-worker"' } : {}
  return c.json(loomError.toJSON(), STATUS[loomError.code], headers)
}

function bearer(token: string | undefined): MiddlewareHandler {
  if (!token) return async (_c, next) => next()
  return async (c, next) => {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(c.req.header('authorization') ?? '')
    if (match && (await tokensEqual(match[1]!, token))) return next()
    return errorResponse(
      c,
      new LoomError(
        'unauthorized',
        match ? 'unauthorized: the bearer token is not valid' : 'unauthorized: an Authorization: Bearer token is required',
      ),
    )
  }
}

async function jsonOf(c: Context): Promise<unknown> {
  try {
    return await c.req.json()
  } catch (error) {
    throw new LoomError('invalid', `body: not JSON (${(error as Error).message})`, { details: { field: 'body' } })
  }
}

/** What the HTTP app hands requests to: the worker's transport-neutral entry points. */
export interface WorkerEndpoints {
  dispatchStep(request: DispatchStepRequest): Promise<void>
  dryRun(request: DryRunRequest): Promise<DryRunResult>
  app: string
}

/**
 * The worker's side of Loom's HTTP dispatch, as core's `httpDispatcher` and `httpDryRunner`
 * call it: `POST /steps/dispatch` answers 202 as soon as the step is accepted (its handler
 * runs in the background and reports through Complete), `POST /dry-run` answers the
 * `DryRunResult`. With a token, both refuse a request without `Authorization: Bearer`
 * (401) before reading its body. `GET /health` is open, for load balancers.
 */
export function workerHttpApp(endpoints: WorkerEndpoints, options: { token?: string | undefined }) {
  const auth = bearer(options.token)
  return new Hono()
    .get('/health', (c) => c.json({ status: 'ok', app: endpoints.app }))
    .post('/steps/dispatch', auth, async (c) => {
      try {
        const request = parse(DispatchStepRequestSchema, await jsonOf(c), '')
        await endpoints.dispatchStep(request)
        return c.json({ status: 'accepted' }, 202)
      } catch (error) {
        return errorResponse(c, error)
      }
    })
    .post('/dry-run', auth, async (c) => {
      try {
        const request = parse(DryRunRequestSchema, await jsonOf(c), '')
        return c.json(await endpoints.dryRun(request), 200)
      } catch (error) {
        return errorResponse(c, error)
      }
    })
    .notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}`, code: 'not_found' }, 404))
}
