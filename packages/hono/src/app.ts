import {
  type Actor,
  DEFAULT_LIMITS,
  type Limits,
  type Loom,
  LoomError,
  type LoomInstance,
  type LimitedSchemas,
  limitedSchemas,
  type NamedTokens,
  RunStatusResponseSchema,
} from '@loom/core'
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { except } from 'hono/combine'
import { methodNotAllowed } from 'hono/method-not-allowed'
import * as v from 'valibot'
import { callerGuards, type Guards, type LoomEnv } from './auth'
import { type BodyCacheOptions, bodyCache, versionedAnswers } from './conditional'
import { describeRoute } from './describe'
import { errorResponse, type LoomErrorBody, toErrorResponse } from './errors'
import { eventStream } from './events'
import { discoveryRoutes } from './discoveries'
import { migrationRoutes } from './migrations'
import { openApiDocument } from './openapi'
import { registryRoutes } from './registry'
import { reportRoutes, runRoutes } from './runs'
import { runIdParam } from './validation'

/**
 * The `Loom` that `loomApp` serves: the interface, plus `as(actor)` to hold each request to
 * its caller's role (what `createLoom` returns). `limits`, when present, are what request
 * bodies are judged against; default core's `DEFAULT_LIMITS`. `versionOf`, when present, is
 * what `ETag`s and the body cache are made of; without it (a Loom that cannot tell versions,
 * such as a remote client) no `ETag` is sent, `If-None-Match` is ignored and nothing is cached.
 */
export type ServedLoom = Loom &
  Pick<LoomInstance, 'as'> & { readonly limits?: Readonly<Limits>; readonly versionOf?: LoomInstance['versionOf'] }

export interface LoomAppOptions {
  /**
   * The single operator token (`LOOM_TOKEN`); its holder is operator `operator`. Accepted on
   * every route. RFC 6750 token characters only (A–Z a–z 0–9 . _ ~ + / - and trailing `=`).
   */
  token?: string
  /**
   * The single worker token; its holder is worker `worker`, who may call the worker routes:
   * `POST /registry/announce`, `POST /migrations/{id}/candidates`, `POST /event/{runId}` and
   * `/pr-opened`. May equal `token` (API 0.2 used one token for both); its holder is then the operator.
   */
  workerToken?: string
  /** Named operator tokens: `{ alice: '<token>' }`, or the text `alice:<token>,bob:<token>` of `LOOM_OPERATORS`. */
  operators?: NamedTokens | string
  /** Named worker tokens: `{ 'app-charts': '<token>' }`, or the text of `LOOM_WORKERS`. Each worker owns what it first announces. */
  workers?: NamedTokens | string
  /**
   * Who makes a request, for a service that knows its callers its own way (sessions, JWTs,
   * mTLS): an actor, or null to answer 401. Instead of tokens; giving both is refused.
   * Called once per request, before the body is read; `/health` and `/openapi.json` do not call it.
   */
  authenticate?: (request: Request) => Actor | null | Promise<Actor | null>
  /** Largest request body accepted, in bytes; larger ones get 413 `too_large`. Default 4 MiB. */
  maxBodyBytes?: number
  /** How often `GET /events` writes a heartbeat comment. Default 15 s. */
  heartbeatMs?: number
  /**
   * Keep the serialized bodies of `GET /migrations` (with or without `summary`),
   * `GET /migrations/{id}` and `GET /migrations/{id}/candidates` (with any query), each under
   * the store's version of what it shows, and serve one only while the store is still at
   * that version. Serializing a long list costs more than the rest of the request together
   * (bench/http-candidates.ts), and consoles read the same lists again and again.
   *
   * On by default: the version is read from the store on every request, so a body is never
   * served after a change, whichever process made it (replicas, a Temporal worker). What it
   * costs is memory: up to `maxBytes` (default 32 MiB) in at most `maxEntries` (default
   * 1,000) bodies, per app. `false` turns it off (ETags stay); lower `maxBytes` where memory
   * is scarce (workerd's isolates have 128 MB). Needs `loom.versionOf`.
   */
  bodyCache?: false | BodyCacheOptions
  /** Receives errors that are bugs (answered 500). Default: console.error. */
  onError?: (error: unknown) => void
}

/** Whether this process has said that a loomApp is open; it says so once, not once per app. */
let warnedOpen = false

/**
 * The HTTP API of `http-api.md` as a Hono app: a thin translation of every route to the
 * `Loom` interface, which does the work. Each request is authenticated once (a token, or
 * the `authenticate` hook), refused when the caller's role may not call the route's method,
 * then validated with core's schemas at `loom`'s limits, all before `loom` is called, as
 * `loom.as(caller)` so that core holds the caller to ownership and review rules too. Every
 * failure answers `{ error, code }` with the status of its code. Each route carries its
 * description, from which `GET /openapi.json` is generated. Mount it wherever you like; it
 * uses Web-standard APIs only, so it runs on Node, Bun and workerd (each proven by an example test).
 *
 * With no token and no `authenticate` every route is open to anyone, with an operator's
 * rights; the first such app of a process says so on `console.warn`.
 *
 * @example
 * import { Hono } from 'hono'
 * import { createLoom, memoryStore, localEngine } from '@loom/core'
 * import { loomApp } from '@loom/hono'
 *
 * const loom = createLoom({ store: memoryStore(), engine: localEngine() })
 * const api = loomApp(loom, { operators: process.env.LOOM_OPERATORS, workers: process.env.LOOM_WORKERS })
 * const app = new Hono().route('/api', api)
 */
export function loomApp(loom: ServedLoom, options: LoomAppOptions = {}) {
  const onError = options.onError ?? ((error: unknown) => console.error('[loom] unhandled error in loomApp:', error))
  const limits = loom.limits ?? DEFAULT_LIMITS
  const schemas = limitedSchemas(limits)
  const guards = callerGuards(options, {
    definitions: {
      MigrationAnnouncement: schemas.MigrationAnnouncement,
      AnnounceRequest: schemas.AnnounceRequest,
      RegisterMigrationRequest: schemas.RegisterMigrationRequest,
      SubmitCandidatesRequest: schemas.SubmitCandidatesRequest,
      PatchCandidatesRequest: schemas.PatchCandidatesRequest,
      StepCompletedEvent: schemas.StepCompletedEvent,
    },
  })
  if (guards.open && !warnedOpen) {
    warnedOpen = true
    console.warn(
      '[loom] loomApp has no token and no authenticate: every route is open to anyone, with an operator’s rights. ' +
        'Close it with token/workerToken or named operators/workers (LOOM_TOKEN, LOOM_OPERATORS, LOOM_WORKERS), or authenticate.',
    )
  }
  const served = { loom, guards, schemas, limits }
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024
  const versionOf = loom.versionOf?.bind(loom)
  const answer = versionedAnswers(versionOf, versionOf && options.bodyCache !== false ? bodyCache(options.bodyCache) : undefined)
  let openapi: Record<string, unknown> | undefined

  const app = new Hono<LoomEnv>()
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
      // Only where a body is read: on Node, asking a GET for its body builds the whole Request
      // (@hono/node-server makes one lazily), which costs a conditional GET most of its time.
      except(
        (c) => c.req.method === 'GET' || c.req.method === 'HEAD',
        bodyLimit({
          maxSize: maxBodyBytes,
          onError: (c) =>
            errorResponse(
              c,
              new LoomError('too_large', `body: larger than the limit of ${maxBodyBytes} bytes`, { details: { field: 'body' } }),
            ),
        }),
      ),
    )
    .route('/migrations', migrationRoutes(served, answer))
    .route('/migrations', discoveryRoutes(served))
    .route('/registry', registryRoutes(served))
    .route('/runs', runRoutes(served))
    .route('/event', reportRoutes(served))
    .get(
      '/status/:runId',
      describeRoute({
        operationId: 'runStatus',
        summary: 'The engine-level view of an executed run (API 0.2’s /status)',
        responses: { 200: { description: 'The run’s runtime status', body: RunStatusResponseSchema } },
        errors: { not_found: 'the run has not been executed' },
      }),
      guards.allow('runStatus'),
      runIdParam,
      async (c) => c.json(await loom.as(c.var.actor).runStatus(c.req.valid('param').runId)),
    )
    .get(
      '/events',
      describeRoute({
        operationId: 'events',
        summary: 'Server-sent events: one `event: <type>` message per change, its data a LoomEvent; reconnect with Last-Event-ID',
        parameters: [
          {
            name: 'Last-Event-ID',
            in: 'header',
            required: false,
            description: 'The id of the last event received: every change after it is sent first. Any other text starts the stream now.',
            schema: v.string(),
          },
        ],
        responses: {
          200: {
            description: 'The event stream',
            content: {
              'text/event-stream': {
                schema: {
                  type: 'string',
                  description:
                    'Each message: `id: <activity entry id, decimal>`, `event: <LoomEvent type>`, `data: <LoomEvent as JSON>`; ' +
                    '`retry: 2000` first, then a `: connected` comment once the subscription is in place',
                },
              },
            },
          },
        },
      }),
      // Streams of a Loom share one reader of the log; the guard holds each caller to `subscribe`'s role.
      guards.allow('subscribe'),
      (c) => eventStream(c, loom.as(c.var.actor), options.heartbeatMs ?? 15_000),
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

/** What each resource's routes are built from: the Loom, the guards, and the limits and schemas bodies are judged by. */
export interface Served {
  loom: ServedLoom
  guards: Guards
  schemas: LimitedSchemas
  limits: Readonly<Limits>
}

/** The type of the app, for `hono/client`'s `hc<LoomApp>()`. */
export type LoomApp = ReturnType<typeof loomApp>
