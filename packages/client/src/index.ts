/**
 * @loom/client — the `Loom` interface over HTTP. `createClient({ baseUrl })` speaks the
 * wire contract that `@loom/hono` serves, with the same method names and the same
 * `LoomError` codes as `createLoom`, so code written against `Loom` runs unchanged against
 * a Loom in another process. It uses fetch alone (no Node built-ins, no EventSource).
 */
export { createClient, type ClientOptions, type LoomClient } from './client'
