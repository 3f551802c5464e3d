/**
 * Loom's HTTP API on Bun: `bun src/main.ts`. Bun runs the TypeScript and serves the Hono
 * app with `Bun.serve`; nothing here is Node-specific. `PORT` (default 3000; 0 picks a
 * free one), `HOST` (default 127.0.0.1), `LOOM_TOKEN` (optional bearer token). Prints
 * `listening on http://HOST:PORT` once it accepts connections.
 */
import { createLoom, localEngine, memoryStore } from '@loom/core'
import { loomApp } from '@loom/hono'
import { Hono } from 'hono'

/** The part of Bun's global this example uses (the repository does not install @types/bun). */
declare const Bun: {
  serve(options: { fetch: (request: Request) => Response | Promise<Response>; hostname: string; port: number }): {
    port: number
    stop(force?: boolean): void
  }
  version: string
}
declare const process: { env: Record<string, string | undefined>; on(signal: string, handler: () => void): void; exit(code: number): never }

const loom = createLoom({ store: memoryStore(), engine: localEngine() })
await loom.ready
const token = process.env.LOOM_TOKEN
const app = new Hono().get('/', (c) => c.text(`Loom on Bun ${Bun.version}`)).route('/api', loomApp(loom, token ? { token } : {}))

const hostname = process.env.HOST ?? '127.0.0.1'
const server = Bun.serve({ fetch: app.fetch, hostname, port: Number(process.env.PORT ?? 3000) })
console.log(`listening on http://${hostname}:${server.port}`)

const shutdown = () => {
  server.stop(true)
  void loom.close().finally(() => process.exit(0))
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
