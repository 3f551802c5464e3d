import { DEFAULT_LIMITS, type Limits, LoomError, SlugSchema, parse, readJson } from '@loom/core'
import type { MiddlewareHandler } from 'hono'
import { validator } from 'hono/validator'
import * as v from 'valibot'
import { withFacts } from './describe'

/**
 * Request validation with core's schemas and core's `parse`, so an HTTP 400 says exactly
 * what `createLoom` would have said: the field and the reason (`candidates.1.id: must not
 * contain "__"`). `parse` throws a `LoomError('invalid')`; the app's error handler answers it.
 * Each validator carries, for the OpenAPI document, what it checks and what it answers.
 */

type Validated<Target extends string, In, Out> = MiddlewareHandler<any, string, { in: { [K in Target]: In }; out: { [K in Target]: Out } }>
/** As `Validated`, for input a client may leave out (`hc` then does not require it). */
type OptionalValidated<Target extends string, In, Out> = MiddlewareHandler<
  any,
  string,
  { in: { [K in Target]?: In }; out: { [K in Target]: Out } }
>

const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json\s*(;|$)/i

const BODY_ERRORS = {
  invalid: 'the body is not JSON, or a field breaks its rules',
  too_large: 'the body is larger than the limit the app is configured with',
}

/** How a JSON body is read. */
export interface JsonBodyOptions {
  /** The limits the body is measured against while it is read: `depth`, and the lengths of `steps`, `candidates` and `files`. Default `DEFAULT_LIMITS`. */
  limits?: Readonly<Limits>
}

/** The body's bytes (hono keeps them, so a later reader gets the same). */
async function bytesOf(c: { req: { arrayBuffer(): Promise<ArrayBuffer> } }): Promise<Uint8Array> {
  return new Uint8Array(await c.req.arrayBuffer())
}

/** Whether `bytes` hold nothing but the whitespace JSON allows around a value. */
const isBlank = (bytes: Uint8Array) => bytes.every((b) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d)

/**
 * Validates the JSON body; `label` prefixes field names (empty: the body's own fields).
 * The body is read as core reads every transport's JSON (`readJson`): bytes that are not
 * UTF-8 (refused, never turned into U+FFFD), nesting deeper than `limits.depth` or lists longer than theirs (measured
 * before parsing) and malformed JSON are each refused with `invalid` naming `body`, before
 * the schema sees anything.
 */
export function jsonBody<S extends v.GenericSchema>(
  schema: S,
  label = '',
  options: JsonBodyOptions = {},
): Validated<'json', v.InferInput<S>, v.InferOutput<S>> {
  const limits = options.limits ?? DEFAULT_LIMITS
  const middleware: MiddlewareHandler = async (c, next) => {
    requireJsonType(c.req.header('content-type'))
    const value = readJson(await bytesOf(c), limits, 'body')
    c.req.addValidatedData('json', parse(schema, value, label) as object)
    await next()
  }
  return withFacts(middleware as Validated<'json', v.InferInput<S>, v.InferOutput<S>>, {
    body: { schema, required: true },
    errors: BODY_ERRORS,
  })
}

/**
 * Validates a JSON body the route also serves without one (a body added to an API 0.2 route,
 * whose clients send none): no body, or an empty one, is judged as `{}`; any other must be a
 * JSON object and is then judged as `jsonBody` judges it.
 */
export function optionalJsonBody<S extends v.GenericSchema>(
  schema: S,
  options: JsonBodyOptions = {},
): OptionalValidated<'json', v.InferInput<S>, v.InferOutput<S>> {
  const limits = options.limits ?? DEFAULT_LIMITS
  const middleware: MiddlewareHandler = async (c, next) => {
    const bytes = await bytesOf(c)
    let value: unknown = {}
    if (!isBlank(bytes)) {
      requireJsonType(c.req.header('content-type'))
      value = readJson(bytes, limits, 'body')
      // valibot's object schemas take an array, and one whose fields are all optional would let `[true]` through as `{}`.
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new LoomError('invalid', 'body: must be a JSON object', { details: { field: 'body' } })
      }
    }
    c.req.addValidatedData('json', parse(schema, value, '') as object)
    await next()
  }
  return withFacts(middleware as OptionalValidated<'json', v.InferInput<S>, v.InferOutput<S>>, {
    body: { schema, required: false },
    errors: BODY_ERRORS,
  })
}

function requireJsonType(contentType: string | undefined) {
  // A body of another type is refused for its type, rather than read as JSON text and judged field by field.
  if (!JSON_MEDIA_TYPE.test(contentType ?? '')) {
    throw new LoomError('invalid', 'body: Content-Type must be application/json', { details: { field: 'body' } })
  }
}

/** Validates the query string (each parameter's first value); `prepare` turns the text into what the schema judges. */
export function queryOf<S extends v.ObjectSchema<v.ObjectEntries, v.ErrorMessage<v.ObjectIssue> | undefined>>(
  schema: S,
  prepare: (query: Record<string, string>) => unknown = (q) => q,
): Validated<'query', v.InferInput<S>, v.InferOutput<S>> {
  const middleware = validator('query', (_value, c) => parse(schema, prepare(c.req.query()), 'query')) as unknown as Validated<
    'query',
    v.InferInput<S>,
    v.InferOutput<S>
  >
  return withFacts(middleware, {
    parameters: Object.entries(schema.entries).map(([name, entry]) => ({
      name,
      in: 'query' as const,
      required: entry.type !== 'optional',
      schema: entry,
    })),
    errors: { invalid: 'a query parameter breaks its rules' },
  })
}

/** One slug path parameter: the field its message names, what it is, and what a 404 means for it. */
export interface SlugParam {
  /** The field the message names: the `{id}` of `/migrations/{id}` is reported as `migrationId`, as `createLoom` reports it. */
  label: string
  description: string
  /** Why the route answers 404 for a well-formed value. */
  missing: string
}

/**
 * Validates path parameters as slugs, in the order given (one validator for all of them:
 * hono keeps one validated value per target).
 */
export function slugParams<const P extends Record<string, SlugParam>>(
  params: P,
): Validated<'param', Record<keyof P & string, string>, Record<keyof P & string, string>> {
  const names = Object.keys(params) as Array<keyof P & string>
  const middleware = validator('param', (value) => {
    const raw = value as Record<string, string>
    return Object.fromEntries(names.map((name) => [name, parse(SlugSchema, raw[name], params[name]!.label)]))
  }) as unknown as Validated<'param', Record<keyof P & string, string>, Record<keyof P & string, string>>
  return withFacts(middleware, {
    parameters: names.map((name) => ({
      name,
      in: 'path' as const,
      required: true,
      description: params[name]!.description,
      schema: SlugSchema,
    })),
    errors: {
      invalid: `${names.map((n) => `\`${n}\``).join(' or ')} breaks the id rules`,
      not_found: names.map((n) => params[n]!.missing).join('; '),
    },
  })
}

/**
 * The `{runId}` of the run routes. Not judged here: one that does not parse names no run,
 * and `loom` answers 404 as for any run that does not exist.
 */
export const runIdParam = withFacts(
  validator('param', (value) => ({ runId: (value as Record<string, string>).runId! })) as unknown as Validated<
    'param',
    { runId: string },
    { runId: string }
  >,
  {
    parameters: [
      {
        name: 'runId',
        in: 'path',
        required: true,
        description: '`{migrationId}__{candidateId}`; one that does not parse is a 404',
        schema: v.string(),
      },
    ],
    errors: { not_found: 'the run id names no run, or does not parse' },
  },
)
