/**
 * An API process of the events test (process A or B): `loomApp` under `/api` over `createLoom`
 * with the PostgreSQL store on the test's schema (migrated by the test) and the Temporal engine,
 * whose runs execute in the Temporal worker process. Nothing is shared with the other processes
 * but the store and Temporal, so whatever reaches this process's `/events` came through them.
 * Prints `ready <port>` once it serves.
 *
 * Environment: EVENTS_DATABASE_URL, EVENTS_SCHEMA, EVENTS_TEMPORAL_ADDRESS, EVENTS_TASK_QUEUE,
 * EVENTS_PORT, EVENTS_INSTANCE_ID.
 */
import { serve } from '@hono/node-server'
import { createLoom } from '@loom/core'
import { loomApp } from '@loom/hono'
import { postgresStore } from '@loom/postgres'
import { temporalEngine } from '@loom/temporal'
import { Client, Connection } from '@temporalio/client'
import { Hono } from 'hono'
import postgres from 'postgres'
import { env } from './env'

const port = Number(env('EVENTS_PORT'))
const instanceId = env('EVENTS_INSTANCE_ID')
const log = (error: unknown) => console.error(`[${instanceId} ${process.pid}]`, error instanceof Error ? error.message : error)

const sql = postgres(env('EVENTS_DATABASE_URL'), { max: 10, onnotice: () => {} })
const connection = await Connection.connect({ address: env('EVENTS_TEMPORAL_ADDRESS') })
const loom = createLoom({
  store: postgresStore(sql, { schema: env('EVENTS_SCHEMA') }),
  engine: temporalEngine({ client: new Client({ connection }), taskQueue: env('EVENTS_TASK_QUEUE') }),
  instanceId,
  reconcile: { intervalMs: 500, leaseMs: 3_000, stallMs: 5_000 },
  onError: log,
})
await loom.ready

const app = new Hono().route('/api', loomApp(loom, { onError: log }))
serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () => console.log(`ready ${port}`))
