import {
  CandidateQuerySchema,
  CandidateRefSchema,
  LoomError,
  MigrationAnnouncementSchema,
  RegisterMigrationRequestSchema,
  StepCompletedEventSchema,
  SubmitCandidatesRequestSchema,
  type Loom,
} from '@loom/core'
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { methodNotAllowed } from 'hono/method-not-allowed'
import * as v from 'valibot'
import { bearer } from './auth'
import { errorResponse, toErrorResponse, type LoomErrorBody } from './errors'
import { eventHub, eventStream } from './events'
import { listCache } from './list-cache'
import { openApiDocument } from './openapi'
import { jsonBody, queryOf, slugParam } from './validation'

export interface LoomAppOptions {
  /**
   * Bearer token for the operator routes (everything but the worker routes, `/health`
   * and `/openapi.json`). Also accepted on worker routes. Unset: operator routes are open.
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

const SummaryQuerySchema = v.object({ summary: v.optional(v.picklist(['true', 'false'], 'must be true or false')) })

/** `limit` and `offset` arrive as text; numbers in, so core's schema judges them. */
const numbersIn = (query: Record<string, string>) => {
  const out: Record<string, unknown> = { ...query }
  for (const key of ['limit', 'offset']) {
    const value = query[key]
    if (value !== undefined && /^-?\d+$/.test(value)) out[key] = Number(value)
  }
  return out
}

/** API 0.2 workers send the announcement bare or wrapped as `{ data: … }`. */
const AnnounceBodySchema = v.pipe(
  v.unknown(),
  v.transform((body) =>
    typeof body === 'object' && body !== null && 'data' in body && !('id' in body) ? (body as { data: unknown }).data : body,
  ),
  MigrationAnnouncementSchema,
)

/**
 * The HTTP API of `http-api.md` as a Hono app: a thin translation of every route to the
 * `Loom` interface, which does the work. Requests are validated with core's schemas
 * before they reach `loom`; every failure answers `{ error, code }` with the status of its
 * code. Mount it wherever you like; it uses Web-standard APIs only, so it runs on Node,
 * Bun and workerd (each proven by an example test).
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
  const operator = bearer([options.token], 'operator')
  const worker = bearer([options.workerToken ?? options.token, options.token], 'worker')
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024
  const hub = eventHub(loom, options.eventReplayMs ?? 60_000)
  const lists = options.cacheCandidateLists ? listCache(loom) : undefined
  let openapi: Record<string, unknown> | undefined
  const migrationId = slugParam('id', 'migrationId')

  const migrations = new Hono()
    .get('/', operator, queryOf(SummaryQuerySchema), async (c) =>
      c.json({ migrations: await loom.listMigrations({ summary: c.req.valid('query').summary === 'true' }) }),
    )
    .post('/', operator, jsonBody(RegisterMigrationRequestSchema), async (c) => c.json(await loom.register(c.req.valid('json')), 201))
    .get('/:id', operator, migrationId, async (c) => c.json(await loom.getMigration(c.req.valid('param').id)))
    .delete('/:id', operator, migrationId, async (c) => {
      await loom.deleteMigration(c.req.valid('param').id)
      return c.body(null, 204)
    })
    .post('/:id/candidates', worker, migrationId, jsonBody(SubmitCandidatesRequestSchema), async (c) => {
      await loom.submitCandidates(c.req.valid('param').id, c.req.valid('json').candidates)
      return c.body(null, 204)
    })
    .get('/:id/candidates', operator, migrationId, queryOf(CandidateQuerySchema, numbersIn), async (c) => {
      const id = c.req.valid('param').id
      // API 0.2 clients expect the bare list of every candidate; a query pages it and counts.
      if (Object.keys(c.req.query()).length === 0) {
        if (lists) return c.body(await lists.get(id), 200, { 'content-type': 'application/json' })
        return c.json(await loom.listCandidates(id))
      }
      const { candidates, total } = await loom.searchCandidates(id, c.req.valid('query'))
      return c.json(candidates, 200, { 'X-Total-Count': String(total) })
    })
    .post('/:id/queue', operator, migrationId, jsonBody(CandidateRefSchema), async (c) =>
      c.json({ runId: await loom.queue(c.req.valid('param').id, candidateIdOf(c.req.valid('json'))) }, 202),
    )
    .post('/:id/dry-run', operator, migrationId, jsonBody(CandidateRefSchema), async (c) =>
      c.json(await loom.dryRun(c.req.valid('param').id, candidateIdOf(c.req.valid('json')))),
    )

  const registry = new Hono().post('/announce', worker, jsonBody(AnnounceBodySchema), async (c) =>
    c.json(await loom.announce(c.req.valid('json'))),
  )

  // Run ids are not validated here: one that does not parse names no run, and `loom` answers 404.
  const runs = new Hono()
    .get('/:runId', operator, async (c) => c.json(await loom.getRun(c.req.param('runId'))))
    .delete('/:runId/dequeue', operator, async (c) => {
      await loom.dequeue(c.req.param('runId'))
      return c.body(null, 204)
    })
    .post('/:runId/execute', operator, async (c) => c.json({ runId: await loom.execute(c.req.param('runId')) }, 202))
    .post('/:runId/cancel', operator, async (c) => {
      await loom.cancel(c.req.param('runId'))
      return c.body(null, 204)
    })

  const events = new Hono()
    .post('/:runId', worker, jsonBody(StepCompletedEventSchema), async (c) => {
      await loom.complete(c.req.param('runId'), c.req.valid('json'))
      return c.json({ status: 'accepted' as const }, 202)
    })
    .post('/:runId/pr-opened', worker, jsonBody(StepCompletedEventSchema), async (c) => {
      await loom.prOpened(c.req.param('runId'), c.req.valid('json'))
      return c.json({ status: 'accepted' as const }, 202)
    })

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
    .route('/migrations', migrations)
    .route('/registry', registry)
    .route('/runs', runs)
    .route('/event', events)
    .get('/status/:runId', operator, async (c) => c.json(await loom.runStatus(c.req.param('runId'))))
    .get('/events', operator, (c) => eventStream(c, hub, options.heartbeatMs ?? 15_000))
    .get('/openapi.json', (c) =>
      c.json(
        (openapi ??= openApiDocument({ operatorAuth: Boolean(options.token), workerAuth: Boolean(options.workerToken ?? options.token) })),
      ),
    )
    .get('/health', async (c) => c.json(await loom.health()))
    .all('*', (c) => errorResponse(c, new LoomError('not_found', `no route for ${c.req.method} ${c.req.path}`)))
    .onError((error, c) => toErrorResponse(c, error, onError))
}

/** The type of the app, for `hono/client`'s `hc<LoomApp>()`. */
export type LoomApp = ReturnType<typeof loomApp>

function candidateIdOf(ref: v.InferOutput<typeof CandidateRefSchema>): string {
  return 'candidateId' in ref ? ref.candidateId : ref.candidate.id
}
