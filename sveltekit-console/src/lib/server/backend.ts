/**
 * The Loom the console works against, and the `/api` it serves. By default Loom runs in this
 * process (`createLoom` over the configured store and engine, `loomApp` answering `/api`);
 * with `LOOM_URL` the console holds a `@loom/client` and forwards `/api` to the remote API.
 * Pages and actions only ever see the `Loom` interface, so both modes behave the same.
 */
import { Hono } from 'hono'
import { createLoom, localEngine, memoryStore, type Engine, type Loom, type LoomEvent, type MigrationStore, type StepDispatcher, type DryRunner } from '@loom/core'
import { loomApp } from '@loom/hono'
import { createClient } from '@loom/client'
import type { ConsoleConfig } from './config'
import { demoWorker } from './demo-worker'

export interface Backend {
  readonly loom: Loom
  readonly mode: 'embedded' | 'remote'
  /** Answers a request whose path starts with `/api`. */
  api(request: Request): Promise<Response>
  /** Stops what this backend started, in reverse order. */
  close(): Promise<void>
}

type Closer = () => Promise<void> | void

/**
 * Builds the backend the configuration asks for. Everything it opens, it closes in `close`.
 *
 * @example
 * const backend = await startBackend(readConfig(process.env))
 * const migrations = await backend.loom.listMigrations({ summary: true })
 */
export async function startBackend(config: ConsoleConfig, overrides: { store?: MigrationStore } = {}): Promise<Backend> {
  if (config.loomUrl) return remoteBackend(config)
  const closers: Closer[] = []
  const close = async () => {
    for (const closer of closers.reverse()) {
      try {
        await closer()
      } catch (error) {
        console.error('[loom console] while closing:', error)
      }
    }
  }
  try {
    const store = overrides.store ?? memoryStore()
    // Events from runs hosted elsewhere (a Temporal worker in this process) join Loom's own.
    const extraEvents = new Set<(event: LoomEvent) => void>()
    const emitExtra = (event: LoomEvent) => extraEvents.forEach((listener) => listener(event))

    let loomRef: Loom | undefined
    const worker = config.exampleWorker ? demoWorker({ loom: () => loomRef! }) : undefined
    if (worker) closers.push(() => worker.close())

    const dispatcher: StepDispatcher | undefined = worker?.dispatcher
    const dryRunner: DryRunner | undefined = worker?.dryRunner
    const engine: Engine = localEngine()

    const inner = createLoom({
      store,
      engine,
      ...(dispatcher ? { dispatcher } : {}),
      ...(dryRunner ? { dryRunner } : {}),
    })
    closers.push(() => inner.close())
    await inner.ready
    void emitExtra

    const loom: Loom = {
      ...inner,
      subscribe(listener) {
        extraEvents.add(listener)
        const off = inner.subscribe(listener)
        return () => {
          extraEvents.delete(listener)
          off()
        }
      },
    }
    loomRef = loom
    if (worker) await worker.announce(loom)

    const app = new Hono().route('/api', loomApp(loom, { ...(config.token ? { token: config.token } : {}), ...(config.workerToken ? { workerToken: config.workerToken } : {}) }))
    return { loom, mode: 'embedded', api: async (request) => app.fetch(request), close }
  } catch (error) {
    await close()
    throw error
  }
}

function remoteBackend(config: ConsoleConfig): Backend {
  const base = config.loomUrl!
  const client = createClient({ baseUrl: base, ...(config.token ? { token: config.token } : {}) })
  return {
    loom: client,
    mode: 'remote',
    async api(request) {
      const url = new URL(request.url)
      const target = `${base}${url.pathname.replace(/^\/api/, '')}${url.search}`
      const headers = new Headers(request.headers)
      headers.delete('host')
      headers.delete('cookie')
      const init: RequestInit & { duplex?: 'half' } = { method: request.method, headers, signal: request.signal, redirect: 'manual' }
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        init.body = request.body
        init.duplex = 'half'
      }
      let response: Response
      try {
        response = await fetch(target, init)
      } catch (error) {
        return Response.json({ error: `the Loom API at ${base} could not be reached: ${(error as Error).message}`, code: 'unavailable' }, { status: 503 })
      }
      // fetch has already decoded the body, so the upstream encoding and length no longer apply.
      const out = new Headers(response.headers)
      out.delete('content-encoding')
      out.delete('content-length')
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers: out })
    },
    async close() {
      client.close()
    },
  }
}
