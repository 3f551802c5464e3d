import {
  ActivityEntrySchema,
  ActivityPageSchema,
  AnnounceRequestSchema,
  CancelOptionsSchema,
  CandidateRefSchema,
  CandidateStatusSchema,
  CandidateWithStatusSchema,
  DryRunResultSchema,
  ErrorBodySchema,
  ExecuteOptionsSchema,
  HTTP_STATUS_OF_CODE,
  LoomEventSchema,
  type LoomErrorCode,
  MigrationAnnouncementSchema,
  RegisteredMigrationSchema,
  RegisterMigrationRequestSchema,
  RunHistorySchema,
  RunInfoSchema,
  RunStatusResponseSchema,
  SlugSchema,
  StepCompletedEventSchema,
  StepResultSchema,
  SubmitCandidatesRequestSchema,
  PatchCandidatesRequestSchema,
  DiscoverySchema,
} from '@loom/core'
import { type ConversionConfig, toJsonSchema, toJsonSchemaDefs } from '@valibot/to-json-schema'
import type { Hono } from 'hono'
import { COMPOSED_HANDLER } from 'hono/utils/constants'
import * as v from 'valibot'
import { version } from '../package.json'
import { factsOf, type ParameterFact, type RouteDescription, type RouteFacts } from './describe'

type Json = Record<string, unknown>

type Definitions = Record<string, v.GenericSchema>

/**
 * The named schemas of the document: core's, the same definitions that validate requests.
 * Wherever a route's schema is one of them, the document refers to it by name. The request
 * schemas an app validates with (held to its Loom's limits) come from its guards' facts.
 */
const DEFINITIONS: Definitions = {
  Slug: SlugSchema,
  CandidateStatus: CandidateStatusSchema,
  RegisteredMigration: RegisteredMigrationSchema,
  MigrationAnnouncement: MigrationAnnouncementSchema,
  AnnounceRequest: AnnounceRequestSchema,
  RegisterMigrationRequest: RegisterMigrationRequestSchema,
  SubmitCandidatesRequest: SubmitCandidatesRequestSchema,
  PatchCandidatesRequest: PatchCandidatesRequestSchema,
  Discovery: DiscoverySchema,
  ExecuteOptions: ExecuteOptionsSchema,
  CancelOptions: CancelOptionsSchema,
  CandidateRef: CandidateRefSchema,
  CandidateWithStatus: CandidateWithStatusSchema,
  StepCompletedEvent: StepCompletedEventSchema,
  StepResult: StepResultSchema,
  RunInfo: RunInfoSchema,
  RunStatusResponse: RunStatusResponseSchema,
  DryRunResult: DryRunResultSchema,
  ActivityEntry: ActivityEntrySchema,
  ActivityPage: ActivityPageSchema,
  RunHistory: RunHistorySchema,
  LoomEvent: LoomEventSchema,
  Error: v.object({
    ...ErrorBodySchema.entries,
    field: v.optional(v.string()),
    status: v.optional(v.string()),
    dependency: v.optional(v.string()),
  }),
}

const CONVERSION: ConversionConfig = {
  target: 'draft-2020-12',
  // v.check rules and transforms have no JSON Schema form; the descriptions below state them.
  errorMode: 'ignore',
  overrideRef: ({ referenceId }) => `#/components/schemas/${referenceId}`,
}

/** The JSON Schema of one schema of a route, with references to the components. */
function jsonSchemaOf(schema: v.GenericSchema, definitions: Definitions): Json {
  const { $schema: _, $defs: __, ...json } = toJsonSchema(schema, { ...CONVERSION, definitions }) as Json
  return json
}

/** The components. Rules a JSON Schema cannot say (no `__` in an id, unique candidate ids) are in the descriptions. */
function components(definitions: Definitions): Record<string, Json> {
  const schemas = toJsonSchemaDefs(definitions, CONVERSION) as unknown as Record<string, Json>
  for (const schema of Object.values(schemas)) delete schema.$schema
  schemas.Slug!.description = '1–200 characters of A–Z a–z 0–9 . _ -; never "__", never starting or ending with "_", never "." or ".."'
  schemas.SubmitCandidatesRequest!.description = 'Candidate ids must be unique within the list.'
  schemas.PatchCandidatesRequest!.description =
    'Ids must be unique within each list, no id in both, and the two lists together within the limit of candidates of one request.'
  schemas.Error!.description =
    'Every error answer. `field` names the offending field (400), `status` the candidate status (409), `dependency` what failed (503).'
  // The unwrapping is a transform, which JSON Schema cannot say; this is what it accepts.
  schemas.AnnounceRequest = {
    description: 'A MigrationAnnouncement, bare or wrapped as {data: …} (API 0.2 workers send either).',
    oneOf: [
      { $ref: '#/components/schemas/MigrationAnnouncement' },
      { type: 'object', required: ['data'], properties: { data: { $ref: '#/components/schemas/MigrationAnnouncement' } } },
    ],
  }
  return schemas
}

const json = (schema: Json, description: string): Json => ({ description, content: { 'application/json': { schema } } })

/** The facts of every handler of one method and path, merged. */
interface Operation {
  method: string
  path: string
  route?: RouteDescription
  access?: NonNullable<RouteFacts['access']>
  parameters: ParameterFact[]
  body?: NonNullable<RouteFacts['body']>
  errors: Map<LoomErrorCode, string[]>
  definitions?: Definitions
}

/** `app.routes` grouped by method and path, in the order they were added, each with the facts of its chain. */
function operationsOf(app: Hono<any, any, any>): Operation[] {
  const operations = new Map<string, Operation>()
  for (const route of app.routes) {
    // `use` middleware and the catch-all answer every path; they are the document's preamble, not operations.
    if (route.method === 'ALL') continue
    const path = route.path.replace(/:(\w+)/g, '{$1}')
    const key = `${route.method} ${path}`
    let op = operations.get(key)
    if (!op) operations.set(key, (op = { method: route.method.toLowerCase(), path, parameters: [], errors: new Map() }))
    const handler = (route.handler as { [COMPOSED_HANDLER]?: unknown })[COMPOSED_HANDLER] ?? route.handler
    const facts = factsOf(handler)
    if (!facts) continue
    if (facts.route) op.route = facts.route
    if (facts.access) op.access = facts.access
    if (facts.body) op.body = facts.body
    if (facts.definitions) op.definitions = facts.definitions
    op.parameters.push(...(facts.parameters ?? []), ...(facts.route?.parameters ?? []))
    addErrors(op, facts.errors)
  }
  // The handler's own errors come after those of the chain before it: that is when it answers them.
  for (const op of operations.values()) addErrors(op, op.route?.errors)
  return [...operations.values()]
}

function addErrors(op: Operation, errors: RouteFacts['errors']) {
  for (const [code, reason] of Object.entries(errors ?? {}) as Array<[LoomErrorCode, string]>) {
    op.errors.set(code, [...new Set([...(op.errors.get(code) ?? []), reason])])
  }
}

/** What the error body adds, by code (the `Error` schema's optional fields). */
const ERROR_HINTS: Partial<Record<LoomErrorCode, string>> = {
  invalid: '`field` names the field',
  conflict: '`status` names the candidate’s status',
}

function operationObject(op: Operation, definitions: Definitions): Json {
  const route = op.route
  if (!route) throw new Error(`${op.method.toUpperCase()} ${op.path} has no describeRoute(…): every route of the app is described`)
  const parameters = op.parameters.map((p) => ({
    name: p.name,
    in: p.in,
    required: p.required,
    ...((route.params?.[p.name] ?? p.description) ? { description: route.params?.[p.name] ?? p.description } : {}),
    schema: jsonSchemaOf(p.schema, definitions),
  }))
  for (const name of Object.keys(route.params ?? {})) {
    if (!op.parameters.some((p) => p.name === name))
      throw new Error(`${route.operationId}: describes a parameter ${name} that no validator reads`)
  }
  const responses: Array<[number, Json]> = Object.entries(route.responses).map(([status, r]) => [
    Number(status),
    {
      description: r.description,
      ...(r.headers ? { headers: r.headers } : {}),
      ...(r.body
        ? { content: { 'application/json': { schema: jsonSchemaOf(r.body, definitions) } } }
        : r.content
          ? { content: r.content }
          : {}),
    },
  ])
  for (const [code, reasons] of op.errors) {
    const hint = ERROR_HINTS[code] ? ` (${ERROR_HINTS[code]})` : ''
    responses.push([HTTP_STATUS_OF_CODE[code], json({ $ref: '#/components/schemas/Error' }, `${code}: ${reasons.join('; ')}${hint}`)])
  }
  responses.sort(([a], [b]) => a - b)
  return {
    operationId: route.operationId,
    summary: route.summary,
    ...(route.description ? { description: route.description } : {}),
    tags: [op.access?.access ?? 'public'],
    ...(parameters.length ? { parameters } : {}),
    ...(op.body
      ? {
          requestBody: {
            required: op.body.required,
            content: { 'application/json': { schema: jsonSchemaOf(op.body.schema, definitions) } },
          },
        }
      : {}),
    responses: Object.fromEntries(responses.map(([status, response]) => [String(status), response])),
    security: op.access?.security ?? [],
  }
}

/**
 * The OpenAPI 3.1 document of `app`, generated from its routes: each route's
 * `describeRoute`, the guard that enforces its access (its bearer scheme only when a token
 * is configured) and the validators that check its input (parameters, body and the errors
 * they answer). A route without a description is an error. `loomApp` serves it at
 * `GET /openapi.json`.
 *
 * @example
 * const doc = openApiDocument(loomApp(loom, { token }))
 */
export function openApiDocument(app: Hono<any, any, any>, options: { title?: string; version?: string } = {}): Json {
  const paths: Record<string, Record<string, Json>> = {}
  const operations = operationsOf(app)
  // The schemas of the app's guards (one set per loomApp); core's defaults where it has none.
  const definitions = { ...DEFINITIONS, ...operations.find((op) => op.definitions)?.definitions }
  for (const op of operations) {
    paths[op.path] ??= {}
    paths[op.path]![op.method] = operationObject(op, definitions)
  }
  return {
    openapi: '3.1.0',
    info: {
      title: options.title ?? 'Loom HTTP API',
      version: options.version ?? version,
      description:
        'Loom orchestrates migrations across many targets. Workers announce migrations, submit candidates and report steps; ' +
        'operators do all of that and queue, execute and cancel runs, approve or reject manual reviews, and read what happened ' +
        '(a migration’s activity log, a run’s history, each entry with who and when). A migration belongs ' +
        'to the worker that first announced it: another worker changing it, or a worker deciding a manual review, is 403 `forbidden`. ' +
        'Every error is {error, code}. An unknown route answers 404 `not_found`; ' +
        'a known path with a method it does not serve answers 405 `invalid` with an Allow header.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    tags: [
      { name: 'operator', description: 'For consoles and operators: an operator’s token; a worker’s is refused with 403' },
      { name: 'worker', description: 'For workers: a worker’s token (on its own migrations) or an operator’s' },
      { name: 'public', description: 'Open to anyone' },
    ],
    paths,
    components: {
      schemas: components(definitions),
      securitySchemes: {
        operatorToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'An operator’s token: the `token` of loomApp (operator `operator`) or one of its named `operators`',
        },
        workerToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'A worker’s token: the `workerToken` of loomApp (worker `worker`) or one of its named `workers`',
        },
      },
    },
  }
}
