import { LoomError } from '@loom/core'
import type { MigrationStore } from '@loom/core/store'
import type { Sql } from 'postgres'
import { migrate, schemaName, type MigrateResult } from './schema'
import { activityMethods } from './store/activity'
import { candidateMethods } from './store/candidates'
import { storeContext } from './store/context'
import { discoveryMethods } from './store/discoveries'
import { migrationMethods } from './store/migrations'
import { runMethods } from './store/runs'

export interface PostgresStoreOptions {
  /** The schema holding Loom's tables (see `migrate`). Default `loom`. */
  schema?: string
  /**
   * How long a call may wait for the database before it fails `unavailable`: the bound on a
   * request to a dead or terminated connection (its write may still land, as when a commit's
   * answer is lost). Default 5 000 ms; 0 waits for ever.
   */
  timeoutMs?: number
}

/** A `MigrationStore` on PostgreSQL, which can also bring its own tables up to date. */
export interface PostgresStore extends MigrationStore {
  /** Applies the schema migrations this store needs; the same as `migrate(sql, { schema })`. */
  migrate(): Promise<MigrateResult>
}

/**
 * Every call is a few short statements (milliseconds); 5 s leaves room for a loaded pool and
 * still answers 503 well before an HTTP client or a worker gives up.
 */
const DEFAULT_TIMEOUT_MS = 5_000

/**
 * A `MigrationStore` on the caller's `postgres` client (a PostgreSQL server, or PGlite
 * through `pglite()`). The client stays the caller's: the store never closes it. Run
 * `migrate` (or `store.migrate()`) once before use.
 *
 * The store keeps; core decides. A status change or a step report reads the run with its
 * row version, hands it to core (`decideTransition`, `decideStepReport` from
 * `@loom/core/store`; no status rule is restated here), and writes the decision with one
 * conditional statement — `UPDATE … WHERE version = $read`, or an insert that yields to a
 * concurrent one — which also draws a new attempt's number, rewrites the steps when the
 * decision changes them (cleared, or carried over by a resume), writes the cancelled attempt
 * and the change's activity entry. Of concurrent changes to one run exactly one write
 * matches; the others read again and answer from what they find. Rewrites of many rows
 * (upsert, replace candidates, delete) are single calls of functions the schema defines,
 * which lock before they check; an upsert with a claimant claims the migration in its own
 * insert, and writes nothing when the migration is another worker's; each writes the
 * activity draft it is given when, and only when, it applied. `listActivity` reads a page of
 * the log below a horizon no running transaction can write under (see version 4 of the
 * schema). No client-side transaction is ever left open, so a connection that dies mid-call
 * leaves nothing half-applied. Listing joins statuses,
 * filters, counts and pages in one query. A database that cannot be reached, or does not
 * answer within `timeoutMs` (5 s by default), surfaces as an `unavailable` LoomError; build
 * the client with `clientOptions` so that a killed connection fails its calls at once.
 *
 * @example
 * import postgres from 'postgres'
 * import { createLoom, localEngine } from '@loom/core'
 * import { clientOptions, postgresStore } from '@loom/postgres'
 *
 * const sql = postgres(process.env.DATABASE_URL!, { ...clientOptions, max: 10 })
 * const store = postgresStore(sql, { schema: 'loom' })
 * await store.migrate()
 * const loom = createLoom({ store, engine: localEngine() })
 */
export function postgresStore(sql: Sql<any>, options: PostgresStoreOptions = {}): PostgresStore {
  if (typeof sql !== 'function' || typeof (sql as { begin?: unknown }).begin !== 'function') {
    throw new LoomError('invalid', 'sql: must be a client made by the postgres package (postgres(url))', {
      details: { field: 'sql' },
    })
  }
  const transform = sql.options?.transform
  if (transform?.column?.from || transform?.column?.to || transform?.row?.from || transform?.value?.from) {
    throw new LoomError('invalid', 'sql: a client with column, row or value transforms is not supported; pass one without `transform`', {
      details: { field: 'sql' },
    })
  }
  const schema = schemaName(options.schema)
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new LoomError('invalid', 'timeoutMs: must be a number of milliseconds, 0 or more', { details: { field: 'timeoutMs' } })
  }
  const ctx = storeContext(sql, schema, timeoutMs)
  return {
    migrate: () => migrate(sql, { schema }),
    ...migrationMethods(ctx),
    ...candidateMethods(ctx),
    ...discoveryMethods(ctx),
    ...runMethods(ctx),
    ...activityMethods(ctx),
    async ping() {
      await ctx.call(() => sql`select 1`)
    },
  }
}
