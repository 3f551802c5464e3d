import type { LoomErrorCode } from '@loom/core'
import type { MiddlewareHandler } from 'hono'
import type * as v from 'valibot'

/**
 * What each piece of a route's handler chain says about the route, for the OpenAPI document.
 * The facts sit on the middleware that makes them true, as hono's OpenAPI middlewares attach
 * theirs (`describeRoute` of hono-openapi): the guard carries the access it enforces, a
 * validator the parameter or body it checks and the errors it answers, `describeRoute` the
 * rest. `openApiDocument(app)` walks `app.routes` and merges them, so the document cannot
 * say something the chain does not do.
 */
const ROUTE_FACTS: unique symbol = Symbol.for('@loom/hono/route-facts')

/** Which role a route is for: `worker` routes take workers and operators, `operator` routes operators only; see README.md. */
export type RouteAccess = 'operator' | 'worker' | 'public'

type Json = Record<string, unknown>

/** One parameter a validator reads (or, for `describeRoute`, one the handler reads itself). */
export interface ParameterFact {
  name: string
  in: 'path' | 'query' | 'header'
  required: boolean
  description?: string
  schema: v.GenericSchema
}

/** One success answer. */
interface ResponseFact {
  description: string
  /** The JSON body, as the valibot schema it is typed by. */
  body?: v.GenericSchema
  /** Any other content, as OpenAPI content objects by media type. */
  content?: Record<string, Json>
  headers?: Record<string, Json>
}

/** What `describeRoute` states: the route's name, purpose and success answers, and the errors only its handler knows. */
export interface RouteDescription {
  operationId: string
  summary: string
  description?: string
  responses: Record<number, ResponseFact>
  /** Errors the handler answers (a conflict of the status rules, a worker that cannot be reached), each with why. */
  errors?: Partial<Record<LoomErrorCode, string>>
  /** Descriptions of parameters the validators declare, by name; a name no validator declares is an error. */
  params?: Record<string, string>
  /** Parameters the handler reads itself (a header). */
  parameters?: ParameterFact[]
}

/** The facts one middleware contributes. */
export interface RouteFacts {
  route?: RouteDescription
  /** From the guard: who may call, and the security schemes it accepts (none when no token is set). */
  access?: { access: Exclude<RouteAccess, 'public'>; security: Array<Record<string, string[]>> }
  /**
   * From the guard: the named schemas the app's validators use (core's, held to its Loom's
   * limits), which the document's components are made of. Default: core's schemas at the
   * default limits.
   */
  definitions?: Record<string, v.GenericSchema>
  parameters?: ParameterFact[]
  /** The JSON body the validator checks, and whether the route also serves requests without one. */
  body?: { schema: v.GenericSchema; required: boolean }
  errors?: Partial<Record<LoomErrorCode, string>>
}

/** Attaches `facts` to `middleware` and returns it, its type unchanged. */
export function withFacts<M extends MiddlewareHandler<any, any, any>>(middleware: M, facts: RouteFacts): M {
  return Object.assign(middleware, { [ROUTE_FACTS]: facts })
}

/** The facts a handler of `app.routes` carries, if any. */
export function factsOf(handler: unknown): RouteFacts | undefined {
  return typeof handler === 'function' ? (handler as { [ROUTE_FACTS]?: RouteFacts })[ROUTE_FACTS] : undefined
}

/**
 * The description of one route: a middleware that does nothing but carry it. Every route
 * of `loomApp` has one; `openApiDocument` refuses a route without.
 *
 * @example
 * new Hono().get('/health', describeRoute({ operationId: 'health', summary: 'Whether it answers', responses: { 200: { description: 'Healthy' } } }), (c) => c.json({ status: 'ok' }))
 */
export function describeRoute(description: RouteDescription): MiddlewareHandler {
  return withFacts(async (_c, next) => next(), { route: description })
}
