import { type Loom, LoomError, RunStatusResponseSchema } from '@loom/core'
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { methodNotAllowed } from 'hono/method-not-allowed'
import * as v from 'valibot'
import { bearerGuards } from './auth'
import { describeRoute } from './describe'
import { errorResponse, type LoomErrorBody, toErrorResponse } from './errors'
import { eventHub, eventStream } from './events'
import { listCache } from './list-cache'
import { migrationRoutes } from './migrations'
import { openApiDocument } from './openapi'
import { registryRoutes } from './registry'
import { reportRoutes, runRoutes } from './runs'
import { runIdParam } from './validation'

export interface LoomAppOptions {
  /**
   * Bearer token for the operator routes (everything but the worker routes, `/health`
   * and `/openapi.json`). Also accepted on worker routes. Unset: operator routes are open.
   * RFC 6750 token characters only (A–Z a–z 0–9 . _ ~ + / - and trailing `=`).
   */
  token?: string
  /**
   * Bearer token for the worker routes: `POST /registry/announce`,
   * `POST /migrations/{id}/candidates`, `POST /event/{runId}` and `/pr-opened`.
   * Default: `token`.
   */
  workerToken?: string
  /** Largest request body accepted, in bytes; larger ones get 413 `too_large`. Default 4 MiB. */
  maxBodyBytes?: number
  /** How often `GET /events` writes a heartbeat comment. Default 15 s. */
  heartbeatMs?: number
  /**
   * How long, after the last `GET /events` stream closes, events are still kept for a
   * client that reconnects with `Last-Event-ID`. Default 60 s.
   */
  eventReplayMs?: number
  /**
   * Serve `GET /migrations/{id}/candidates` without a query from the serialized list, kept
   * until this process's `loom` reports a change to the migration. Several times faster
   * for large lists, but only correct when every change goes through this process's
   * `loom` (memory store, or embedded PGlite with the local engine); not with a store
   * shared between processes or a Temporal engine. Default false.
   */
  cacheCandidateLists?: boolean
  /** Receives errors that are bugs (answered 500). Default: console.error. */
  onError?: (error: unknown) => void
}

/**
 * The HTTP API of `http-api.md` as a Hono app: a thin translation of every route to the
 * `Loom` interface, which does the work. Requests are validated with core's schemas
 * before they reach `loom`; every failure answers `{ error, code }` with the status of its
 * code. Each route carries its description, from which `GET /openapi.json` is generated.
 * Mount it wherever you like; it uses Web-standard APIs only, so it runs on Node, Bun and
 * workerd (each proven by an example test).
 *
 * @example
 * import { Hono } from 'hono'
 * import { createLoom, memoryStore, localEngine } from '@loom/core'
 * import { loomApp } from '@loom/hono'
 *
 * const loom = createLoom({ store: memoryStore(), engine: localEngine() })
 * const app = new Hono().route('/api', loomApp(loom, { token: process.env.LOOM_TOKEN }))
 */
export function loomApp(loom: Loom, options: LoomAppOptions = {}) {
  const onError = options.onError ?? ((error: unknown) => console.error('[loom] unhandled error in loomApp:', error))
  const guards = bearerGuards(options)
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024
  const hub = eventHub(loom, options.eventReplayMs ?? 60_000)
  const lists = options.cacheCandidateLists ? listCache(loom) : undefined
  let openapi: Record<string, unknown> | undefined

  const app = new Hono()
  return app
    .use(
      methodNotAllowed({
        app,
        // The closed set of codes has none for a wrong method; `invalid` says "fix the request".
        onMethodNotAllowed: (c, methods) =>
          c.json(
            {
              error: `method ${c.req.method} is not allowed on ${c.req.path}; allowed: ${methods.join(', ')}`,
              code: 'invalid',
            } satisfies LoomErrorBody,
            405,
            { Allow: methods.join(', ') },
          ),
      }),
    )
    .use(
      bodyLimit({
        maxSize: maxBodyBytes,
        onError: (c) =>
          errorResponse(
            c,
            new LoomError('too_large', `body: larger than the limit of ${maxBodyBytes} bytes`, { details: { field: 'body' } }),
          ),
      }),
    )
    .route('/migrations', migrationRoutes(loom, guards, lists))
    .route('/registry', registryRoutes(loom, guards))
    .route('/runs', runRoutes(loom, guards))
    .route('/event', reportRoutes(loom, guards))
    .get(
      '/status/:runId',
      describeRoute({
        operationId: 'runStatus',
        summary: 'The engine-level view of an executed run (API 0.2’s /status)',
        responses: { 200: { description: 'The run’s runtime status', body: RunStatusResponseSchema } },
        errors: { not_found: 'the run has not been executed' },
      }),
      guards.operator,
      runIdParam,
      async (c) => c.json(await loom.runStatus(c.req.valid('param').runId)),
    )
    .get(
      '/events',
      describeRoute({
        operationId: 'events',
        summary: 'Server-sent events: one `event: <type>` message per change, its data a LoomEvent; reconnect with Last-Event-ID',
        parameters: [{ name: 'Last-Event-ID', in: 'header', required: false, schema: v.string() }],
        responses: {
          200: {
            description: 'The event stream',
            content: {
              'text/event-stream': {
                schema: {
                  type: 'string',
                  description: 'Each message: `id: {instance}-{n}`, `event: <LoomEvent type>`, `data: <LoomEvent as JSON>`',
                },
              },
            },
          },
        },
      }),
      guards.operator,
      (c) => eventStream(c, hub, options.heartbeatMs ?? 15_000),
    )
    .get(
      '/openapi.json',
      describeRoute({
        operationId: 'openapi',
        summary: 'This document',
        responses: { 200: { description: 'The OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } } },
      }),
      (c) => c.json((openapi ??= openApiDocument(app))),
    )
    .get(
      '/health',
      describeRoute({
        operationId: 'health',
        summary: 'Whether the store and the engine answer',
        responses: { 200: { description: 'Healthy', body: v.object({ status: v.literal('ok') }) } },
        errors: { unavailable: 'the store or the engine does not answer, `dependency` names which' },
      }),
      async (c) => c.json(await loom.health()),
    )
    .all('*', (c) => errorResponse(c, new LoomError('not_found', `no route for ${c.req.method} ${c.req.path}`)))
    .onError((error, c) => toErrorResponse(c, error, onError))
}

/** The type of the app, for `hono/client`'s `hc<LoomApp>()`. */
export type LoomApp = ReturnType<typeof loomApp>
