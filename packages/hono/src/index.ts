/**
 * @loom/hono — Loom's HTTP API as a Hono app. `loomApp(loom, options)` serves every route
 * of the wire contract (`http-api.md`) as a thin translation to the `Loom` interface:
 * each caller is authenticated (tokens, or the embedding service's `authenticate`) and held
 * to its role, requests are validated with core's valibot schemas, failures answer `{ error, code }`
 * with the status of their code, `GET /events` streams changes as server-sent events and
 * `GET /openapi.json` describes it all, generated from the routes. It imports no Node
 * built-ins, so it runs on Node, Bun and edge runtimes such as workerd.
 */
export { loomApp, type LoomApp, type LoomAppOptions, type ServedLoom } from './app'
export type { BodyCacheOptions } from './conditional'
export { errorBody, type LoomErrorBody } from './errors'
export type { RouteAccess } from './describe'
export { openApiDocument } from './openapi'
