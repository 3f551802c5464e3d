import {
  CandidateRefSchema,
  CandidateStatusSchema,
  CandidateWithStatusSchema,
  DryRunResultSchema,
  ErrorBodySchema,
  LoomEventSchema,
  MigrationAnnouncementSchema,
  RegisteredMigrationSchema,
  RegisterMigrationRequestSchema,
  RunInfoSchema,
  RunStatusResponseSchema,
  SlugSchema,
  StepCompletedEventSchema,
  SubmitCandidatesRequestSchema,
} from '@loom/core'
import { toJsonSchemaDefs } from '@valibot/to-json-schema'
import * as v from 'valibot'
import { STATUS_OF_CODE } from './errors'

/** Who may call a route when tokens are configured; see README.md. */
export type RouteAccess = 'operator' | 'worker' | 'public'

/**
 * The components, generated from core's schemas: the same definitions that validate
 * requests describe them. Rules a JSON Schema cannot say (no `__` in an id, unique
 * candidate ids) are in the descriptions.
 */
function components() {
  const defs = {
    Slug: SlugSchema,
    CandidateStatus: CandidateStatusSchema,
    RegisteredMigration: RegisteredMigrationSchema,
    MigrationAnnouncement: MigrationAnnouncementSchema,
    RegisterMigrationRequest: RegisterMigrationRequestSchema,
    SubmitCandidatesRequest: SubmitCandidatesRequestSchema,
    CandidateRef: CandidateRefSchema,
    CandidateWithStatus: CandidateWithStatusSchema,
    StepCompletedEvent: StepCompletedEventSchema,
    RunInfo: RunInfoSchema,
    RunStatusResponse: RunStatusResponseSchema,
    DryRunResult: DryRunResultSchema,
    LoomEvent: LoomEventSchema,
    Error: v.object({
      ...ErrorBodySchema.entries,
      field: v.optional(v.string()),
      status: v.optional(v.string()),
      dependency: v.optional(v.string()),
    }),
  }
  const schemas = toJsonSchemaDefs(defs, {
    target: 'draft-2020-12',
    // v.check rules have no JSON Schema form; the descriptions below state them.
    errorMode: 'ignore',
    overrideRef: ({ referenceId }) => `#/components/schemas/${referenceId}`,
  }) as unknown as Record<string, Record<string, unknown>>
  for (const schema of Object.values(schemas)) delete schema.$schema
  schemas.Slug!.description = '1–200 characters of A–Z a–z 0–9 . _ -; never "__", never starting or ending with "_", never "." or ".."'
  schemas.SubmitCandidatesRequest!.description = 'Candidate ids must be unique within the list.'
  schemas.Error!.description =
    'Every error answer. `field` names the offending field (400), `status` the candidate status (409), `dependency` what failed (503).'
  schemas.AnnounceRequest = {
    description: 'A MigrationAnnouncement, bare or wrapped as {data: …} (API 0.2 workers send either).',
    oneOf: [
      { $ref: '#/components/schemas/MigrationAnnouncement' },
      { type: 'object', required: ['data'], properties: { data: { $ref: '#/components/schemas/MigrationAnnouncement' } } },
    ],
  }
  return schemas
}

type Json = Record<string, unknown>
const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` })
const json = (schema: Json, description: string): Json => ({ description, content: { 'application/json': { schema } } })

const ERROR_DESCRIPTIONS: Record<keyof typeof STATUS_OF_CODE, string> = {
  invalid: 'invalid: malformed JSON, a missing or wrongly typed field, an id that breaks the id rules; `field` names it',
  unauthorized: 'unauthorized: a token is configured and the request lacks a valid one',
  not_found: 'not_found: the migration, candidate or run does not exist (or the route does not)',
  conflict: 'conflict: not allowed in the candidate’s current status, which `status` names',
  too_large: 'too_large: the body exceeds the configured limit',
  unavailable: 'unavailable: the engine, store or a worker could not be reached; nothing was changed',
}
const error = (code: keyof typeof STATUS_OF_CODE): [string, Json] => [
  String(STATUS_OF_CODE[code]),
  json(ref('Error'), ERROR_DESCRIPTIONS[code]),
]

const migrationId = { name: 'id', in: 'path', required: true, description: 'The migration id', schema: ref('Slug') }
const runId = {
  name: 'runId',
  in: 'path',
  required: true,
  description: '`{migrationId}__{candidateId}`; one that does not parse is a 404',
  schema: { type: 'string' },
}

interface Operation {
  method: 'get' | 'post' | 'delete'
  path: string
  operationId: string
  summary: string
  access: RouteAccess
  parameters?: Json[]
  body?: Json
  responses: Array<[string, Json]>
  errors: Array<keyof typeof STATUS_OF_CODE>
}

/** Every route of the contract, in the order of http-api.md. */
export const OPERATIONS: Operation[] = [
  {
    method: 'get',
    path: '/migrations',
    operationId: 'listMigrations',
    access: 'operator',
    summary: 'Every migration, oldest first; with summary=true without candidates (counts are kept)',
    parameters: [{ name: 'summary', in: 'query', schema: { type: 'string', enum: ['true', 'false'] } }],
    responses: [
      [
        '200',
        json(
          { type: 'object', required: ['migrations'], properties: { migrations: { type: 'array', items: ref('RegisteredMigration') } } },
          'The migrations',
        ),
      ],
    ],
    errors: ['invalid'],
  },
  {
    method: 'post',
    path: '/migrations',
    operationId: 'registerMigration',
    access: 'operator',
    summary: 'Registers a migration under a generated id',
    body: ref('RegisterMigrationRequest'),
    responses: [['201', json(ref('RegisteredMigration'), 'Registered')]],
    errors: ['invalid'],
  },
  {
    method: 'get',
    path: '/migrations/{id}',
    operationId: 'getMigration',
    access: 'operator',
    summary: 'One migration with its candidates and their runs',
    parameters: [migrationId],
    responses: [['200', json(ref('RegisteredMigration'), 'The migration')]],
    errors: ['invalid', 'not_found'],
  },
  {
    method: 'delete',
    path: '/migrations/{id}',
    operationId: 'deleteMigration',
    access: 'operator',
    summary: 'Deletes a migration; refused while any candidate is running',
    parameters: [migrationId],
    responses: [['204', { description: 'Deleted' }]],
    errors: ['invalid', 'not_found', 'conflict'],
  },
  {
    method: 'post',
    path: '/registry/announce',
    operationId: 'announce',
    access: 'worker',
    summary: 'Registers or updates a migration by id (upsert)',
    body: ref('AnnounceRequest'),
    responses: [['200', json(ref('RegisteredMigration'), 'Registered')]],
    errors: ['invalid'],
  },
  {
    method: 'post',
    path: '/migrations/{id}/candidates',
    operationId: 'submitCandidates',
    access: 'worker',
    summary: 'Replaces the candidate list; candidates with a queued, running or completed run are kept',
    parameters: [migrationId],
    body: ref('SubmitCandidatesRequest'),
    responses: [['204', { description: 'Replaced' }]],
    errors: ['invalid', 'not_found'],
  },
  {
    method: 'get',
    path: '/migrations/{id}/candidates',
    operationId: 'listCandidates',
    access: 'operator',
    summary: 'Candidates with their status, in submission order; all of them without a query',
    parameters: [
      migrationId,
      { name: 'status', in: 'query', schema: ref('CandidateStatus') },
      {
        name: 'q',
        in: 'query',
        description: 'Case-insensitive substring of the id or a metadata value',
        schema: { type: 'string', maxLength: 500 },
      },
      { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 10000 } },
      { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0 } },
    ],
    responses: [
      [
        '200',
        {
          ...json({ type: 'array', items: ref('CandidateWithStatus') }, 'The matching candidates'),
          headers: {
            'X-Total-Count': { description: 'How many match, without limit and offset (sent with a query)', schema: { type: 'integer' } },
          },
        },
      ],
    ],
    errors: ['invalid', 'not_found'],
  },
  {
    method: 'post',
    path: '/migrations/{id}/queue',
    operationId: 'queue',
    access: 'operator',
    summary: 'Queue: not_started → queued',
    parameters: [migrationId],
    body: ref('CandidateRef'),
    responses: [['202', json({ type: 'object', required: ['runId'], properties: { runId: { type: 'string' } } }, 'Queued')]],
    errors: ['invalid', 'not_found', 'conflict'],
  },
  {
    method: 'post',
    path: '/migrations/{id}/dry-run',
    operationId: 'dryRun',
    access: 'operator',
    summary: 'Asks the worker for the file changes a run would make',
    parameters: [migrationId],
    body: ref('CandidateRef'),
    responses: [['200', json(ref('DryRunResult'), 'The per-step diffs')]],
    errors: ['invalid', 'not_found', 'unavailable'],
  },
  {
    method: 'get',
    path: '/runs/{runId}',
    operationId: 'getRun',
    access: 'operator',
    summary: 'The run of a queued, running or completed candidate',
    parameters: [runId],
    responses: [['200', json(ref('RunInfo'), 'The run')]],
    errors: ['not_found'],
  },
  {
    method: 'delete',
    path: '/runs/{runId}/dequeue',
    operationId: 'dequeue',
    access: 'operator',
    summary: 'Dequeue: queued → not_started',
    parameters: [runId],
    responses: [['204', { description: 'Dequeued' }]],
    errors: ['not_found', 'conflict'],
  },
  {
    method: 'post',
    path: '/runs/{runId}/execute',
    operationId: 'execute',
    access: 'operator',
    summary: 'Execute: queued → running, and starts the engine’s run',
    parameters: [runId],
    responses: [['202', json({ type: 'object', required: ['runId'], properties: { runId: { type: 'string' } } }, 'Started')]],
    errors: ['not_found', 'conflict', 'unavailable'],
  },
  {
    method: 'post',
    path: '/runs/{runId}/cancel',
    operationId: 'cancel',
    access: 'operator',
    summary: 'Cancel: queued or running → not_started, recording a cancelled attempt',
    parameters: [runId],
    responses: [['204', { description: 'Cancelled' }]],
    errors: ['not_found', 'conflict'],
  },
  {
    method: 'post',
    path: '/event/{runId}',
    operationId: 'complete',
    access: 'worker',
    summary: 'Reports a step’s outcome',
    parameters: [runId],
    body: ref('StepCompletedEvent'),
    responses: [['202', json({ type: 'object', required: ['status'], properties: { status: { const: 'accepted' } } }, 'Accepted')]],
    errors: ['invalid', 'not_found', 'conflict'],
  },
  {
    method: 'post',
    path: '/event/{runId}/pr-opened',
    operationId: 'prOpened',
    access: 'worker',
    summary: 'Reports a pull request opened: progress on the step, which is still awaited',
    parameters: [runId],
    body: ref('StepCompletedEvent'),
    responses: [['202', json({ type: 'object', required: ['status'], properties: { status: { const: 'accepted' } } }, 'Accepted')]],
    errors: ['invalid', 'not_found', 'conflict'],
  },
  {
    method: 'get',
    path: '/status/{runId}',
    operationId: 'runStatus',
    access: 'operator',
    summary: 'The engine-level view of an executed run (API 0.2’s /status)',
    parameters: [runId],
    responses: [['200', json(ref('RunStatusResponse'), 'The run’s runtime status')]],
    errors: ['not_found'],
  },
  {
    method: 'get',
    path: '/events',
    operationId: 'events',
    access: 'operator',
    summary: 'Server-sent events: one `event: <type>` message per change, its data a LoomEvent; reconnect with Last-Event-ID',
    parameters: [{ name: 'Last-Event-ID', in: 'header', schema: { type: 'string' } }],
    responses: [
      [
        '200',
        {
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
      ],
    ],
    errors: [],
  },
  {
    method: 'get',
    path: '/openapi.json',
    operationId: 'openapi',
    access: 'public',
    summary: 'This document',
    responses: [['200', json({ type: 'object' }, 'The OpenAPI 3.1 document')]],
    errors: [],
  },
  {
    method: 'get',
    path: '/health',
    operationId: 'health',
    access: 'public',
    summary: 'Whether the store and the engine answer',
    responses: [['200', json({ type: 'object', required: ['status'], properties: { status: { const: 'ok' } } }, 'Healthy')]],
    errors: ['unavailable'],
  },
]

/**
 * The OpenAPI 3.1 document of the HTTP API. `operator` and `worker` routes carry their
 * bearer scheme only when the app has tokens configured.
 */
export function openApiDocument(options: { operatorAuth: boolean; workerAuth: boolean; title?: string; version?: string }): Json {
  const paths: Record<string, Record<string, Json>> = {}
  for (const op of OPERATIONS) {
    const security =
      op.access === 'operator' && options.operatorAuth
        ? [{ operatorToken: [] }]
        : op.access === 'worker' && options.workerAuth
          ? [{ workerToken: [] }, ...(options.operatorAuth ? [{ operatorToken: [] }] : [])]
          : []
    const errors = [...op.errors, ...(security.length ? (['unauthorized'] as const) : [])]
    if (op.body) errors.push('too_large')
    const responses = Object.fromEntries([...op.responses, ...[...new Set(errors)].map(error)])
    paths[op.path] ??= {}
    paths[op.path]![op.method] = {
      operationId: op.operationId,
      summary: op.summary,
      tags: [op.access],
      ...(op.parameters ? { parameters: op.parameters } : {}),
      ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: op.body } } } } : {}),
      responses,
      security,
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: options.title ?? 'Loom HTTP API',
      version: options.version ?? '0.3.0',
      description:
        'Loom orchestrates migrations across many targets. Workers announce migrations, submit candidates and report steps; ' +
        'operators queue, execute and cancel runs. Every error is {error, code}. An unknown route answers 404 `not_found`; ' +
        'a known path with a method it does not serve answers 405 `invalid` with an Allow header.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    tags: [
      { name: 'operator', description: 'For consoles and operators; guarded by the operator token' },
      { name: 'worker', description: 'For workers; guarded by the worker token (the operator token is accepted too)' },
      { name: 'public', description: 'Open to anyone' },
    ],
    paths,
    components: {
      schemas: components(),
      securitySchemes: {
        operatorToken: { type: 'http', scheme: 'bearer', description: 'The `token` of loomApp' },
        workerToken: { type: 'http', scheme: 'bearer', description: 'The `workerToken` of loomApp (defaults to `token`)' },
      },
    },
  }
}
