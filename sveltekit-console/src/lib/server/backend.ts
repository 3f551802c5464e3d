/**
 * The Loom the console works against, and the `/api` it serves. By default Loom runs in this
 * process: `createLoom` over PGlite in the data folder and the local engine, and `loomApp`
 * answering `/api`. Workers are processes of their own that announce to that API (`npm start`
 * runs the example worker beside the console). `DATABASE_URL`, `TEMPORAL_ADDRESS` and
 * `MQTT_URL` switch the store, the engine and the worker transport to those services. With `LOOM_URL` the console hosts nothing: it holds a `@loom/client` and
 * forwards `/api` to the remote API. Pages and actions only ever see the `Loom` interface,
 * so every mode behaves the same.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Hono } from 'hono'
import {
  createLoom,
  httpDispatcher,
  httpDryRunner,
  localEngine,
  type DryRunner,
  type Engine,
  type Loom,
  type LoomInstance,
  type LoomEvent,
  type MigrationStore,
  type StepDispatcher,
} from '@loom/core'
import { loomApp } from '@loom/hono'
import { createClient } from '@loom/client'
import type { ConsoleConfig } from './config'

export interface Backend {
  readonly loom: Loom
  readonly mode: 'embedded' | 'remote'
  /** Answers a request whose path starts with `/api`. */
  api(request: Request): Promise<Response>
  /** Stops what this backend started, in reverse order. */
  close(): Promise<void>
}

export interface BackendOptions {
  /** A store to use instead of the configured one (tests). The caller closes it. */
  store?: MigrationStore
  log?: (message: string) => void
}

type Closer = () => Promise<unknown> | unknown

/**
 * Builds the backend the configuration asks for. Everything it opens, it closes in `close`;
 * when starting fails half-way, what was opened is closed before the error is thrown.
 *
 * @example
 * const backend = await startBackend(readConfig(process.env))
 * const migrations = await backend.loom.listMigrations({ summary: true })
 */
export async function startBackend(config: ConsoleConfig, options: BackendOptions = {}): Promise<Backend> {
  if (config.loomUrl) return remoteBackend(config)
  const log = options.log ?? ((message: string) => console.log(`[loom console] ${message}`))
  const closers: Closer[] = []
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) {
      try {
        await closer()
      } catch (error) {
        console.error('[loom console] while closing:', error)
      }
    }
  }

  try {
    const store = options.store ?? (await openStore(config, closers))

    const mqttClient = config.mqttUrl ? await connectMqtt(config.mqttUrl, closers) : undefined
    const workerToken = config.workerToken ?? config.token
    const http = workerToken ? { token: workerToken } : {}
    let dispatcher: StepDispatcher = httpDispatcher(http)
    let dryRunner: DryRunner = httpDryRunner(http)
    if (mqttClient) {
      const { mqttDispatcher, mqttDryRunner } = await import('@loom/mqtt')
      const viaMqtt = { topicPrefix: config.mqttTopicPrefix, ...(workerToken ? { token: workerToken } : {}) }
      const mqttDispatch = mqttDispatcher(mqttClient, viaMqtt)
      const mqttDry = mqttDryRunner(mqttClient, viaMqtt)
      closers.push(
        () => mqttDispatch.close(),
        () => mqttDry.close(),
      )
      const overHttp = { dispatcher, dryRunner }
      // A worker that announced a URL is reached over HTTP; one that did not, over the broker.
      dispatcher = { dispatch: (target, request) => (target.workerUrl ? overHttp.dispatcher : mqttDispatch).dispatch(target, request) }
      dryRunner = { dryRun: (target, request) => (target.workerUrl ? overHttp.dryRunner : mqttDry).dryRun(target, request) }
    }

    // Events of runs hosted by a Temporal worker in this process reach Loom's subscribers through publish.
    let published: LoomInstance | undefined
    const onEvent = (event: LoomEvent) => published?.publish(event)
    const engine = config.temporalAddress ? await temporal(config, { store, dispatcher, onEvent }, closers, log) : localEngine()

    const loom = createLoom({ store, engine, dispatcher, dryRunner, instanceId: config.instanceId, stepTimeout: config.stepTimeout })
    published = loom
    closers.push(() => loom.close())
    await loom.ready

    if (mqttClient) {
      const { mqttAnnouncements } = await import('@loom/mqtt')
      const announcements = mqttAnnouncements(mqttClient, loom, {
        topicPrefix: config.mqttTopicPrefix,
        ...(config.token ? { token: config.token } : {}),
      })
      closers.push(() => announcements.stop())
      await announcements.ready
    }

    const api = new Hono().route(
      '/api',
      loomApp(loom, {
        ...(config.token ? { token: config.token } : {}),
        ...(config.workerToken ? { workerToken: config.workerToken } : {}),
      }),
    )
    return { loom, mode: 'embedded', api: async (request) => api.fetch(request), close }
  } catch (error) {
    await close()
    throw error
  }
}

async function openStore(config: ConsoleConfig, closers: Closer[]): Promise<MigrationStore> {
  const [{ clientOptions, postgresStore }, postgres] = await Promise.all([import('@loom/postgres'), import('postgres')])
  if (config.databaseUrl) {
    // clientOptions: calls on a killed connection fail fast instead of waiting out the store's deadline.
    const sql = postgres.default(config.databaseUrl, { ...clientOptions, onnotice: () => {} })
    closers.push(() => sql.end({ timeout: 5 }))
    const store = postgresStore(sql, { schema: config.databaseSchema })
    await store.migrate()
    return store
  }
  const { pglite } = await import('@loom/postgres')
  const dir = join(config.dataDir, 'pglite')
  await mkdir(dir, { recursive: true })
  const db = await pglite({ dataDir: dir })
  closers.push(() => db.close())
  const store = postgresStore(db.sql, { schema: config.databaseSchema })
  await store.migrate()
  return store
}

async function connectMqtt(url: string, closers: Closer[]) {
  const mqtt = await import('mqtt')
  // MQTT 3.1.1: every broker speaks it (aedes only speaks it); Loom's wire format needs nothing newer.
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, connectTimeout: 10_000, reconnectPeriod: 2_000 })
  closers.push(() => client.endAsync())
  return client
}

async function temporal(
  config: ConsoleConfig,
  deps: { store: MigrationStore; dispatcher: StepDispatcher; onEvent: (event: LoomEvent) => void },
  closers: Closer[],
  log: (message: string) => void,
): Promise<Engine> {
  const [{ Client, Connection }, { NativeConnection }, { temporalEngine, createLoomWorker }] = await Promise.all([
    import('@temporalio/client'),
    import('@temporalio/worker'),
    import('@loom/temporal'),
  ])
  const address = config.temporalAddress!
  const namespace = config.temporalNamespace
  const taskQueue = config.temporalTaskQueue
  const connection = await Connection.connect({ address })
  closers.push(() => connection.close())
  const client = new Client({ connection, namespace })
  const workerConnection = await NativeConnection.connect({ address })
  closers.push(() => workerConnection.close())
  const worker = await createLoomWorker({ connection: workerConnection, taskQueue, namespace, ...deps })
  const running = worker.run()
  running.catch((error) => console.error('[loom console] the Temporal worker stopped:', error))
  closers.push(async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown()
    await running.catch(() => {})
  })
  log(`Temporal worker polling task queue "${taskQueue}" at ${address}`)
  return temporalEngine({ client, taskQueue })
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
        return Response.json(
          { error: `the Loom API at ${base} could not be reached: ${(error as Error).message}`, code: 'unavailable' },
          { status: 503 },
        )
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
