/**
 * Options for the `postgres` client a store runs on, chosen so that a connection the server
 * kills (`pg_terminate_backend`, a restart, a proxy that cuts it) costs the calls in flight on
 * it an `unavailable` within milliseconds, not a wait until the store's `timeoutMs`. Measured
 * on postgres 3.4.9, which with its defaults strands queries for good when connections are
 * killed under load (see the README's driver notes):
 *
 * - `fetch_types: false` — the array-type query it runs on connect loses its rejection when
 *   that connection dies, and the pool hangs. The store sends no array parameters.
 * - `max_pipeline: 1` — at most one query waits on a connection behind the one in flight (the
 *   default is 100). Queries pipelined behind one whose connection died can be kept for the
 *   reconnected socket, which never answers them, and that connection is lost to the pool.
 *   (0 would be safer still but breaks `sql.begin`, which `migrate` uses.)
 * - `backoff` — the default waits up to 20 s before reconnecting after a burst of failures, and
 *   queries handed to that connection wait with it; this retries within half a second.
 * - `connect_timeout: 5` — a server that does not answer fails a new connection in 5 s, not 30.
 *
 * @example
 * import postgres from 'postgres'
 * import { clientOptions, postgresStore } from '@loom/postgres'
 *
 * const sql = postgres(process.env.DATABASE_URL!, { ...clientOptions, max: 10 })
 * const store = postgresStore(sql)
 */
export const clientOptions: ClientOptions = {
  fetch_types: false,
  max_pipeline: 1,
  backoff: (retries: number) => Math.min(0.01 * 2 ** retries, 0.5),
  connect_timeout: 5,
}

/** The options `clientOptions` sets. (postgres 3.4.9's types omit `max_pipeline`, which it reads.) */
interface ClientOptions {
  fetch_types: false
  max_pipeline: number
  backoff: (retries: number) => number
  connect_timeout: number
}
