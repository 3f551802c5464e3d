/**
 * @loom/postgres — Loom's `MigrationStore` on PostgreSQL. `postgresStore(sql)` runs on the
 * caller's `postgres` (postgres.js) client over a normalised schema (migrations, steps,
 * candidates, runs, run steps, cancelled attempts, leases) that `migrate` creates and upgrades
 * under an advisory lock. Core decides each status change; the store writes it with one
 * compare-and-set on the run's row version, audit record included. Claims of a lapsed
 * owner's runs lock what they take, so each run goes to one process. Every call is bounded
 * by `timeoutMs`; `clientOptions` keeps the driver from stranding calls when connections are
 * killed. Listing joins, filters and pages in one query. `pglite({ dataDir })` serves the same SQL from PGlite embedded in
 * the process and persisted in a folder: the default database of the standalone server and
 * the console.
 */
export { postgresStore, type PostgresStore, type PostgresStoreOptions } from './postgres-store'
export { clientOptions } from './client-options'
export { migrate, SCHEMA_VERSION, DEFAULT_SCHEMA, type MigrateOptions, type MigrateResult } from './schema'
export { pglite, type PgliteOptions, type EmbeddedPostgres } from './pglite'
