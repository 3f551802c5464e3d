/**
 * The Loom the console works against, and the `/api` it serves. By default Loom runs in this
 * process: `createLoom` over PGlite in the data folder and the local engine, and `loomApp`
 * answering `/api`. Workers are processes of their own that announce to that API (`npm start`
 * runs the example worker beside the console). `DATABASE_URL`, `TEMPORAL_ADDRESS` and
 * `MQTT_URL` switch the store, the engine and the worker transport to those services. With
 * `LOOM_URL` the console hosts nothing: it holds a `@loom/client` and forwards `/api` to the
 * remote API. Pages and actions only ever see the `Loom` interface (`loomFor(actor)`), so
 * every mode behaves the same.
 *
 * Who is who comes from the configured tokens (`identities`); the console's sign-in sessions
 * live beside its data (`sessions`: a table in the embedded database, a file in the data
 * folder in remote mode).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Hono } from 'hono'
import {
  ANONYMOUS_OPERATOR,
  createLoom,
  httpDispatcher,
  httpDryRunner,
  localEngine,
  type Actor,
  type DryRunner,
  type Engine,
  type Identities,
  type Loom,
  type MigrationStore,
  type StepDispatcher,
} from '@loom/core'
import { loomApp } from '@loom/hono'
import { createClient } from '@loom/client'
import type { Sql } from 'postgres'
import { identitiesOf, operatorNames, type ConsoleConfig } from './config'
import { SESSION_COOKIE, fileSessions, memorySessions, sqlSessions, type SessionStore } from './session'

export interface Backend {
  /** The Loom as Loom itself (`system`): for the console's own work, never for an operator's action. */
  readonly loom: Loom
  readonly mode: 'embedded' | 'remote'
  /** Who holds which configured token. */
  readonly identities: Identities
  /** The console's sign-in sessions. */
  readonly sessions: SessionStore
  /**
   * The Loom as `actor` sees it: every call held to the actor's role and recorded as theirs.
   * Embedded, `loom.as(actor)`. Remote, the one client, which acts with this console's own
   * token (`LOOM_TOKEN`): the remote Loom sees that token's holder, not the signed-in operator,
   * since the console keeps no operator's token after sign-in.
   */
  loomFor(actor: Actor): Loom
  /**
   * The operator a session cookie stands for: null when the session is missing, expired or
   * revoked, or its operator is no longer configured (a name removed from `LOOM_OPERATORS`).
   */
  sessionActor(id: string | undefined): Promise<Actor | null>
  /** Answers a request whose path starts with `/api`. */
  api(request: Request): Promise<Response>
  /** Stops what this backend started, in reverse order. */
  close(): Promise<void>
}

export interface BackendOptions {
  /** A store to use instead of the configured one (tests). The caller closes it. Sessions are then kept in memory unless `sessions` is given. */
  store?: MigrationStore
  /** Where sessions are kept, instead of beside the data (tests). */
  sessions?: SessionStore
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
  const identities = identitiesOf(config)
  if (config.loomUrl) return remoteBackend(config, identities, options)
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
    const opened = options.store ? { store: options.store } : await openStore(config, closers)
    const store = opened.store
    const sessions =
      options.sessions ??
      (opened.sql && !identities.open
        ? await migrated(sqlSessions(opened.sql, { schema: config.databaseSchema, ttlMs: config.sessionTtlMs }))
        : memorySessions({ ttlMs: config.sessionTtlMs }))

    const mqttClient = config.mqttUrl ? await connectMqtt(config.mqttUrl, closers) : undefined
    // Each migration's owner is shown its own token (LOOM_WORKERS), else the single worker token, else LOOM_TOKEN.
    const workerToken = (target: { owner?: string | undefined }) => identities.workerToken(target.owner)
    let dispatcher: StepDispatcher = httpDispatcher({ token: workerToken })
    let dryRunner: DryRunner = httpDryRunner({ token: workerToken })
    if (mqttClient) {
      const { mqttDispatcher, mqttDryRunner } = await import('@loom/mqtt')
      const viaMqtt = { topicPrefix: config.mqttTopicPrefix, token: workerToken }
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

    // What the runs of a Temporal worker change lands in the store's activity log, which Loom's subscribers follow.
    const engine = config.temporalAddress ? await temporal(config, { store, dispatcher }, closers, log) : localEngine()

    const loom = createLoom({
      store,
      engine,
      dispatcher,
      dryRunner,
      instanceId: config.instanceId,
      stepTimeout: config.stepTimeout,
      ...(config.activityRetention ? { activityRetention: config.activityRetention } : {}),
      ...(config.allowedWorkerUrls ? { allowedWorkerUrls: config.allowedWorkerUrls } : {}),
    })
    closers.push(() => loom.close())
    await loom.ready

    if (mqttClient) {
      const { mqttAnnouncements } = await import('@loom/mqtt')
      // A worker announces with its own token (LOOM_WORKERS or LOOM_WORKER_TOKEN), an operator with theirs.
      const announcements = mqttAnnouncements(mqttClient, loom, { topicPrefix: config.mqttTopicPrefix, identities })
      closers.push(() => announcements.stop())
      await announcements.ready
    }

    const sessionActor = sessionActorOf(config, sessions)
    // With no token at all loomApp is open by itself (and says so); otherwise the console tells it who calls.
    const api = new Hono().route('/api', loomApp(loom, identities.open ? {} : { authenticate: apiAuthenticator(identities, sessionActor) }))
    return {
      loom,
      mode: 'embedded',
      identities,
      sessions,
      loomFor: (actor) => loom.as(actor),
      sessionActor,
      api: async (request) => api.fetch(request),
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}

/** The store over the configured database, and that database's client (where the sessions go too). */
async function openStore(config: ConsoleConfig, closers: Closer[]): Promise<{ store: MigrationStore; sql?: Sql }> {
  const [{ clientOptions, postgresStore }, postgres] = await Promise.all([import('@loom/postgres'), import('postgres')])
  if (config.databaseUrl) {
    // clientOptions: calls on a killed connection fail fast instead of waiting out the store's deadline.
    const sql = postgres.default(config.databaseUrl, { ...clientOptions, onnotice: () => {} })
    closers.push(() => sql.end({ timeout: 5 }))
    const store = postgresStore(sql, { schema: config.databaseSchema })
    await store.migrate()
    return { store, sql }
  }
  const { pglite } = await import('@loom/postgres')
  const dir = join(config.dataDir, 'pglite')
  await mkdir(dir, { recursive: true })
  const db = await pglite({ dataDir: dir })
  closers.push(() => db.close())
  const store = postgresStore(db.sql, { schema: config.databaseSchema })
  await store.migrate()
  return { store, sql: db.sql }
}

async function migrated<S extends SessionStore & { migrate(): Promise<void> }>(sessions: S): Promise<S> {
  await sessions.migrate()
  await sessions.sweep()
  return sessions
}

/** The session check of every mode: a live session of an operator who is still configured. */
function sessionActorOf(config: ConsoleConfig, sessions: SessionStore): Backend['sessionActor'] {
  const operators = new Set(operatorNames(config))
  return async (id) => {
    if (!id) return null
    const actor = await sessions.validate(id)
    return actor && actor.kind === 'operator' && operators.has(actor.name) ? actor : null
  }
}

/** The value of cookie `name` in a `Cookie` header. */
function cookieOf(header: string | null, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i

/**
 * How the console's `/api` learns who calls: an `Authorization: Bearer` token names an
 * operator or a worker (a header that is present but names no one is refused, never
 * passed over for the cookie); without one, a GET or HEAD with a live session cookie is
 * that operator, since the browser's `EventSource` on `/api/events` cannot send headers.
 * Other methods need the token: a session alone never changes anything through `/api`
 * (the console's pages change things through their own form actions, which SvelteKit
 * checks for the origin). With no token configured, everyone is the anonymous operator.
 */
function apiAuthenticator(identities: Identities, sessionActor: Backend['sessionActor']): (request: Request) => Promise<Actor | null> {
  return async (request) => {
    if (identities.open) return ANONYMOUS_OPERATOR
    // A header of another scheme, or a token with other characters, names no one.
    const header = request.headers.get('authorization')
    if (header !== null) {
      const bearer = BEARER.exec(header)
      return bearer ? identities.authenticate(bearer[1]) : null
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') return null
    return sessionActor(cookieOf(request.headers.get('cookie'), SESSION_COOKIE))
  }
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
  deps: { store: MigrationStore; dispatcher: StepDispatcher },
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

async function remoteBackend(config: ConsoleConfig, identities: Identities, options: BackendOptions): Promise<Backend> {
  const base = config.loomUrl!
  // The remote Loom checks this token, and records this console's token holder as the actor of every call.
  const client = createClient({ baseUrl: base, ...(config.token ? { token: config.token } : {}) })
  // No database here: the sessions are a file in the data folder, so a restart keeps them.
  const sessions =
    options.sessions ??
    (identities.open
      ? memorySessions({ ttlMs: config.sessionTtlMs })
      : await fileSessions(join(config.dataDir, 'console-sessions.json'), { ttlMs: config.sessionTtlMs }))
  return {
    loom: client,
    mode: 'remote',
    identities,
    sessions,
    loomFor: () => client,
    sessionActor: sessionActorOf(config, sessions),
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
