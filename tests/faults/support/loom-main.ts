/**
 * A Loom server process, as a fault test starts it (and SIGKILLs it): the HTTP API over
 * `createLoom` with the PostgreSQL store (reached through the test's proxy) and the local
 * engine, with a fast reconciler. Prints `ready <port>` once it serves.
 *
 * Environment: FAULTS_DATABASE_URL, FAULTS_SCHEMA, FAULTS_PORT, FAULTS_INSTANCE_ID,
 * FAULTS_APP_NAME (the PostgreSQL application_name of its connections),
 * FAULTS_DISPATCH_ATTEMPTS (default 6).
 */
import { serve } from '@hono/node-server'
import { createLoom, localEngine } from '@loom/core'
import { loomApp } from '@loom/hono'
import { postgresStore } from '@loom/postgres'
import { Hono } from 'hono'
import postgres from 'postgres'

function env(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

const port = Number(env('FAULTS_PORT'))
const log = (error: unknown) => console.error(`[loom ${process.pid}]`, error instanceof Error ? error.message : error)

// postgres.js and the store with their defaults (the store's `timeoutMs` bounds each call): what an
// embedder gets, so the suite's request-time bound holds for the defaults, not for tuned settings.
const sql = postgres(env('FAULTS_DATABASE_URL'), {
  max: 10,
  connection: { application_name: env('FAULTS_APP_NAME') },
  onnotice: () => {},
})
const store = postgresStore(sql, { schema: env('FAULTS_SCHEMA') })
await store.migrate()

const loom = createLoom({
  store,
  engine: localEngine({ dispatchAttempts: Number(process.env.FAULTS_DISPATCH_ATTEMPTS ?? 6) }),
  instanceId: env('FAULTS_INSTANCE_ID'),
  reconcile: { intervalMs: 500, leaseMs: 3_000, stallMs: 5_000 },
  onError: log,
})
await loom.ready

const app = new Hono().route('/api', loomApp(loom, { onError: log }))
serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () => console.log(`ready ${port}`))
