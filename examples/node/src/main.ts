/**
 * Runs the service on Node with @hono/node-server: `PORT` (default 3000; 0 picks a free
 * one), `HOST` (default 127.0.0.1), `LOOM_TOKEN` (optional bearer token). Prints
 * `listening on http://HOST:PORT` once it accepts connections.
 */
import { serve } from '@hono/node-server'
import { createLoom, localEngine, memoryStore } from '@loom/core'
import { createServiceApp } from './app'

const loom = createLoom({ store: memoryStore(), engine: localEngine() })
await loom.ready
const app = createServiceApp({ loom, ...(process.env.LOOM_TOKEN ? { token: process.env.LOOM_TOKEN } : {}) })
const hostname = process.env.HOST ?? '127.0.0.1'

const server = serve({ fetch: app.fetch, hostname, port: Number(process.env.PORT ?? 3000) }, (info) => {
  console.log(`listening on http://${hostname}:${info.port}`)
})

const shutdown = () => {
  server.close()
  // Open event streams would keep close() waiting; the runs are in memory and end with the process anyway.
  void loom.close().finally(() => process.exit(0))
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
