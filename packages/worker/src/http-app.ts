import { DispatchStepRequestSchema, DryRunRequestSchema, HTTP_STATUS_OF_CODE, LoomError, parse, tokensMatch } from '@loom/core'
import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { HTTPException } from 'hono/http-exception'
import type { WorkerEndpoints } from './transports'

const CHALLENGE = 'Bearer realm="loom-worker"'

function errorResponse(c: Context, error: unknown) {
  const loomError = LoomError.is(error)
    ? error
    : new LoomError('unavailable', `the worker failed: ${error instanceof Error ? error.message : String(error)}`)
  const headers: Record<string, string> = loomError.code === 'unauthorized' ? { 'WWW-Authenticate': CHALLENGE } : {}
  return c.json(loomError.toJSON(), HTTP_STATUS_OF_CODE[loomError.code], headers)
}

/**
 * hono's `bearerAuth`, answering every refusal the way the rest of Loom does: 401 with a
 * `{ error, code: 'unauthorized' }` body, also for a malformed header (which hono answers 400).
 */
function bearer(token: string | undefined): MiddlewareHandler {
  if (!token) return async (_c, next) => next()
  const refuse = (message: string) => ({
    wwwAuthenticateHeader: CHALLENGE,
    message: (c: Context) => errorResponse(c, new LoomError('unauthorized', `unauthorized: ${message}`)),
  })
  return bearerAuth({
    verifyToken: (presented) => tokensMatch(presented, token),
    noAuthenticationHeader: refuse('an Authorization: Bearer token is required'),
    invalidAuthenticationHeader: refuse('an Authorization: Bearer token is required'),
    invalidToken: refuse('the bearer token is not valid'),
  })
}

async function jsonOf(c: Context): Promise<unknown> {
  try {
    return await c.req.json()
  } catch (error) {
    throw new LoomError('invalid', `body: not JSON (${(error as Error).message})`, { details: { field: 'body' } })
  }
}

/**
 * The worker's side of Loom's HTTP dispatch, as core's `httpDispatcher` and `httpDryRunner`
 * call it: `POST /steps/dispatch` answers 202 as soon as the step is accepted (its handler
 * runs in the background and reports through Complete), `POST /dry-run` answers the
 * `DryRunResult`. With a token, both refuse a request without `Authorization: Bearer`
 * (401) before reading its body. `GET /health` is open, for load balancers.
 */
export function workerHttpApp(endpoints: WorkerEndpoints, options: { app: string; token?: string | undefined }) {
  const auth = bearer(options.token)
  return (
    new Hono()
      .get('/health', (c) => c.json({ status: 'ok', app: options.app }))
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
      // bearerAuth refuses by throwing its response: answer it even where a host app handles errors its own way.
      .onError((error, c) => (error instanceof HTTPException ? error.getResponse() : errorResponse(c, error)))
      .notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}`, code: 'not_found' }, 404))
  )
}
