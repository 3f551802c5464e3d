import { LoomError, SlugSchema, parse } from '@loom/core'
import type { MiddlewareHandler } from 'hono'
import { validator } from 'hono/validator'
import type * as v from 'valibot'

/**
 * Request validation with core's schemas and core's `parse`, so an HTTP 400 says exactly
 * what `createLoom` would have said: the field and the reason (`candidates.1.id: must not
 * contain "__"`). `parse` throws a `LoomError('invalid')`; the app's error handler answers it.
 */

type Validated<Target extends string, S extends v.GenericSchema> = MiddlewareHandler<
  any,
  string,
  { in: { [K in Target]: v.InferInput<S> }; out: { [K in Target]: v.InferOutput<S> } }
>

const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json\s*(;|$)/i

/** Validates the JSON body; `label` prefixes field names (empty: the body's own fields). */
export function jsonBody<S extends v.GenericSchema>(schema: S, label = ''): Validated<'json', S> {
  return validator('json', (value, c) => {
    // Without this, hono reads a body of another type as `{}` and the message would name a missing field.
    if (!JSON_MEDIA_TYPE.test(c.req.header('content-type') ?? '')) {
      throw new LoomError('invalid', 'body: Content-Type must be application/json', { details: { field: 'body' } })
    }
    return parse(schema, value, label)
  }) as unknown as Validated<'json', S>
}

/** Validates the query string (each parameter's first value). */
export function queryOf<S extends v.GenericSchema>(
  schema: S,
  prepare: (query: Record<string, string>) => unknown = (q) => q,
): Validated<'query', S> {
  return validator('query', (_value, c) => parse(schema, prepare(c.req.query()), 'query')) as unknown as Validated<'query', S>
}

/**
 * Validates one path parameter as a slug. `label` is the field the message names: the
 * `{id}` of `/migrations/{id}` is reported as `migrationId`, as `createLoom` reports it.
 */
export function slugParam<const Name extends string>(
  name: Name,
  label: string,
): MiddlewareHandler<any, string, { in: { param: Record<Name, string> }; out: { param: Record<Name, string> } }> {
  return validator(
    'param',
    (value) => ({ [name]: parse(SlugSchema, (value as Record<string, string>)[name], label) }) as Record<Name, string>,
  ) as never
}
