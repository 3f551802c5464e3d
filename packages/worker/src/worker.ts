import {
  DispatchStepRequestSchema,
  DryRunRequestSchema,
  LoomError,
  parse,
  parseRunId,
  type Candidate,
  type DispatchStepRequest,
  type DryRunResult,
  type DryRunner,
  type Loom,
  type MigrationAnnouncement,
  type StepDispatcher,
  type StringMap,
} from '@loom/core'
import type { MqttClient } from 'mqtt'
import { isPending, pending, type Migration, type Pending } from './define-migration'
import { stackedDryRun } from './dry-run'
import { Executions, type Execution, type StepReport } from './executions'
import { workerHttpApp } from './http-app'
import { retryUnavailable, withRetry, type RetryOptions } from './retry'

/** Announce or receive over MQTT, on the caller's connected mqtt.js client (never closed by the worker). */
export interface MqttTransport {
  mqtt: MqttClient
  /** The first topic level(s); default `loom`. Must match the server's. */
  topicPrefix?: string
}

export interface WorkerOptions {
  /** This worker's app: the `workerApp` of its steps (unless a step names another) and its MQTT topic level. */
  app: string
  /** The migrations this worker announces and runs, from {@link defineMigration}. */
  migrations: Migration[]
  /** Loom in this process (the console hosting a worker, tests). Either this or `loomUrl`. */
  loom?: Loom
  /** Where Loom's HTTP API is, e.g. `http://localhost:3000/api`; the worker talks to it with `@loom/client`. */
  loomUrl?: string
  /**
   * The bearer token. Sent with every call to Loom (its worker token) and, unless
   * `dispatchToken` says otherwise, required on every dispatch and dry-run Loom sends here.
   */
  token?: string
  /** The token Loom's dispatcher sends; dispatches without it are refused. Default: `token`. */
  dispatchToken?: string
  /** Where Loom reaches this worker's HTTP app (`worker.app`), announced as `workerUrl`. */
  url?: string
  /** How migrations are announced: `'http'` (default, through the Loom API) or over MQTT. */
  announce?: 'http' | MqttTransport
  /**
   * How dispatched steps and dry runs arrive: `'http'` (default) through `worker.app` /
   * `worker.fetch`, which you serve, or over MQTT (the worker subscribes in `start`).
   */
  dispatch?: 'http' | MqttTransport
  /** Retries of announce, discovery and reports while Loom cannot be reached. */
  retry?: RetryOptions
  /** The fetch the Loom client uses (with `loomUrl`). */
  fetch?: (input: Request | string | URL, init?: RequestInit) => Promise<Response>
  /** Errors the worker handles but should not hide (a report Loom refused, a discovery that failed). Default: console.error. */
  onError?: (error: unknown) => void
}

/** A running worker: its HTTP routes, its lifecycle, and the calls that report steps. */
export interface Worker {
  /** The worker app name. */
  readonly workerApp: string
  /**
   * The HTTP side of dispatch as a Hono app: `POST /steps/dispatch`, `POST /dry-run` and
   * `GET /health`. Mount it in your own server (`app.route('/loom', worker.app)`) or serve
   * `worker.fetch`.
   */
  readonly app: ReturnType<typeof workerHttpApp>
  /** `worker.app.fetch`, for `serve({ fetch: worker.fetch })`, Bun and edge runtimes. */
  readonly fetch: (request: Request) => Response | Promise<Response>
  /** Dispatch in this process, for a Loom built in the same process: `createLoom({ dispatcher: worker.dispatcher })`. */
  readonly dispatcher: StepDispatcher
  /** Dry runs in this process, as `dispatcher`. */
  readonly dryRunner: DryRunner
  /**
   * Starts receiving steps (MQTT), announces each migration, and once Loom has accepted an
   * announcement runs its discovery and submits the candidates; each of these is retried
   * with backoff while Loom cannot be reached. Resolves when every migration is announced
   * and discovered; rejects with the first failure that retries did not cure.
   */
  start(): Promise<void>
  /** Stops receiving, cancels retries and aborts handlers' signals; waits for the work in flight. */
  stop(): Promise<void>
  /** Runs discovery again and submits the candidates, for one migration or all. */
  discover(migrationId?: string): Promise<void>
  /**
   * Reports a step's outcome, for a step whose handler returned {@link pending} (its pull
   * request merged, say). Retried while Loom cannot be reached; throws Loom's answer
   * otherwise (`conflict` when the run is no longer running or the step already ended differently).
   */
  complete(runId: string, stepName: string, report: StepReport): Promise<void>
  /** Reports progress on a step without ending it (`phase: 'open'` is added unless metadata says otherwise). */
  prOpened(runId: string, stepName: string, progress: { metadata?: StringMap }): Promise<void>
  /** The marker a handler returns when it reports later; the same as the exported `pending`. */
  pending(metadata?: StringMap): Pending
  /** Accepts a dispatched step (validated as `DispatchStepRequest`) and runs its handler in the background. */
  dispatchStep(request: DispatchStepRequest): Promise<void>
  /** Answers a dry run (validated as `DryRunRequest`) with the stacked diffs of this worker's steps. */
  dryRun(request: unknown): Promise<DryRunResult>
}

const notFoundWhileAnnouncing = (error: unknown) => retryUnavailable(error) || LoomError.is(error, 'not_found')

/**
 * Creates a worker for `migrations`. Nothing happens until `start()`; serve `worker.app`
 * (HTTP dispatch) before or after, as you like: a dispatch that arrives early is handled.
 *
 * A step handler returns `{ metadata }` (success, reported at once), throws (failure,
 * reported with `metadata.error`), or returns `worker.pending()` and reports later with
 * `worker.complete`. A step dispatched again while its handler is running is not run a
 * second time; after a restart of the worker it is, so handlers must be idempotent (find
 * the pull request they opened before opening another).
 *
 * @example
 * import { serve } from '@hono/node-server'
 * import { createWorker } from '@loom/worker'
 * import { appChart } from './app-chart'
 *
 * const worker = createWorker({
 *   app: 'charts',
 *   loomUrl: 'http://localhost:3000/api',
 *   token: process.env.LOOM_TOKEN,
 *   url: 'http://localhost:4000',
 *   migrations: [appChart],
 * })
 * serve({ fetch: worker.fetch, port: 4000 })
 * await worker.start()
 */
export function createWorker(options: WorkerOptions): Worker {
  const app = options.app
  if (typeof app !== 'string') throw new LoomError('invalid', 'app: must be the worker app name', { details: { field: 'app' } })
  const migrations = new Map<string, Migration>()
  for (const [i, migration] of (options.migrations ?? []).entries()) {
    if (migration?.defined !== true) {
      throw new LoomError('invalid', `migrations.${i}: must be built with defineMigration`, { details: { field: `migrations.${i}` } })
    }
    if (migrations.has(migration.id)) {
      throw new LoomError('invalid', `migrations.${i}.id: "${migration.id}" is defined twice`, { details: { field: `migrations.${i}.id` } })
    }
    migrations.set(migration.id, migration)
  }
  if (!options.loom && !options.loomUrl) {
    throw new LoomError('invalid', 'loomUrl: give loomUrl (Loom over HTTP) or loom (Loom in this process)', {
      details: { field: 'loomUrl' },
    })
  }
  const onError = options.onError ?? ((error: unknown) => console.error('[loom/worker]', error))
  const retry = options.retry ?? {}
  const dispatchToken = options.dispatchToken ?? options.token
  const executions = new Executions()
  const lifetime = new AbortController()
  const signal = lifetime.signal
  const stopping: Array<() => Promise<void>> = []
  let loomPromise: Promise<Loom> | undefined

  const loom = () =>
    (loomPromise ??= options.loom
      ? Promise.resolve(options.loom)
      : import('@loom/client').then(({ createClient }) =>
          createClient({
            baseUrl: options.loomUrl!,
            ...(options.token ? { token: options.token } : {}),
            ...(options.fetch ? { fetch: options.fetch } : {}),
          }),
        ))

  const announcementOf = (migration: Migration): MigrationAnnouncement => ({
    id: migration.id,
    name: migration.name,
    ...(migration.description === undefined ? {} : { description: migration.description }),
    steps: migration.steps.map((step) => ({
      name: step.name,
      workerApp: step.workerApp ?? app,
      ...(step.description === undefined ? {} : { description: step.description }),
      ...(step.config === undefined ? {} : { config: step.config }),
      ...(step.files === undefined ? {} : { files: step.files }),
    })),
    ...(options.url ? { workerUrl: options.url } : {}),
  })

  const requireMigration = (id: string) => {
    const migration = migrations.get(id)
    if (!migration) throw new LoomError('not_found', `worker app ${app} has no migration ${id}`, { details: { migrationId: id } })
    return migration
  }

  const eventOf = (runId: string, stepName: string, success: boolean, metadata: StringMap | undefined) => {
    const { candidateId } = parseRunId(runId)
    return { stepName, candidate: { id: candidateId }, success, ...(metadata ? { metadata } : {}) }
  }

  const sameReport = (a: StepReport | undefined, b: StepReport) =>
    a !== undefined && a.success === b.success && JSON.stringify(a.metadata ?? {}) === JSON.stringify(b.metadata ?? {})

  /** Sends a final outcome, retrying while Loom is unreachable; records where the execution ends up. */
  const send = async (runId: string, stepName: string, execution: Execution, report: StepReport): Promise<void> => {
    execution.state = 'reporting'
    execution.outcome = report
    try {
      const target = await loom()
      await withRetry(() => target.complete(runId, eventOf(runId, stepName, report.success, report.metadata)), retry, signal)
      execution.state = 'reported'
    } catch (error) {
      // A final answer (the run was cancelled, the step ended differently) settles the step; an
      // unreachable Loom leaves the outcome to be sent again when the step is dispatched again.
      execution.state = retryUnavailable(error) ? 'unreported' : 'reported'
      throw error
    }
  }

  const runStep = (request: DispatchStepRequest, spec: NonNullable<Migration['steps'][number]['run']>) => {
    const { runId, stepName } = request
    const execution = executions.set(runId, stepName, { state: 'running' })
    execution.done = (async () => {
      // Let the dispatch be answered first: a handler's synchronous work must not hold up the 202.
      await new Promise((resolve) => setTimeout(resolve, 0))
      if (signal.aborted) return
      let report: StepReport
      try {
        const outcome = await spec({
          runId,
          migrationId: request.migrationId,
          stepName,
          candidate: request.candidate,
          config: request.config ?? {},
          request,
          signal,
          prOpened: (metadata) => worker.prOpened(runId, stepName, { metadata }),
        })
        // The handler reported by itself (worker.complete), or the worker is stopping: nothing more to send.
        if (execution.state !== 'running' || signal.aborted) return
        if (isPending(outcome)) {
          execution.state = 'pending'
          if (outcome.metadata) await worker.prOpened(runId, stepName, { metadata: outcome.metadata })
          return
        }
        const metadata = outcome && typeof outcome === 'object' ? outcome.metadata : undefined
        report = metadata ? { success: true, metadata } : { success: true }
      } catch (error) {
        // A handler that gives up because the worker stops has not failed the step: the step is dispatched again.
        if (execution.state !== 'running' || signal.aborted) return
        report = { success: false, metadata: { error: error instanceof Error ? error.message : String(error) } }
      }
      await send(runId, stepName, execution, report)
    })().catch((error) => {
      if (!signal.aborted) onError(new Error(`step ${stepName} of run ${runId}: ${(error as Error).message ?? error}`, { cause: error }))
    })
  }

  const dispatchStep = async (input: DispatchStepRequest): Promise<void> => {
    if (signal.aborted) throw new LoomError('unavailable', `worker app ${app} is stopping`)
    const request = parse(DispatchStepRequestSchema, input, '')
    const migration = requireMigration(request.migrationId)
    const step = migration.steps.find((s) => s.name === request.stepName)
    if (!step) {
      throw new LoomError('not_found', `migration ${migration.id} of worker app ${app} has no step "${request.stepName}"`, {
        details: { field: 'stepName' },
      })
    }
    if (!step.run) {
      throw new LoomError('invalid', `step "${step.name}" is a manual-review step: an operator decides it, it is never dispatched`, {
        details: { field: 'stepName' },
      })
    }
    const existing = executions.get(request.runId, request.stepName)
    switch (existing?.state) {
      case 'running':
      case 'pending':
      case 'reporting':
        return // already in hand: its outcome is (or will be) reported once
      case 'unreported': {
        const execution = existing
        execution.done = send(request.runId, request.stepName, execution, execution.outcome!).catch(onError)
        return
      }
      default:
        // Never seen, or seen and reported: a dispatch after the report is a new attempt of the run.
        runStep(request, step.run)
    }
  }

  const dryRun = async (input: unknown): Promise<DryRunResult> => {
    const request = parse(DryRunRequestSchema, input, '')
    return stackedDryRun({ migration: requireMigration(request.migrationId), request, app, signal })
  }

  const discoverOne = async (migration: Migration, announcedOverMqtt: boolean) => {
    const candidates: Candidate[] = await withRetry(
      async () => migration.discover({ signal }),
      retry,
      signal,
      (error) => !LoomError.is(error, 'invalid'),
    )
    const target = await loom()
    // Over MQTT a submit can overtake the announcement it follows on another server: not_found is worth a retry then.
    await withRetry(
      () => target.submitCandidates(migration.id, candidates),
      retry,
      signal,
      announcedOverMqtt ? notFoundWhileAnnouncing : retryUnavailable,
    )
  }

  const handles = (workerApp: string) =>
    workerApp === app || [...migrations.values()].some((m) => m.steps.some((s) => (s.workerApp ?? app) === workerApp))

  let started: Promise<void> | undefined

  const worker: Worker = {
    workerApp: app,
    app: workerHttpApp({ app, dispatchStep: (r) => dispatchStep(r), dryRun: (r) => dryRun(r) }, { token: dispatchToken }),
    fetch: (request) => worker.app.fetch(request),

    dispatcher: {
      async dispatch(target, request) {
        if (!handles(target.workerApp))
          throw new LoomError('unavailable', `worker app ${target.workerApp} is not hosted here (this is ${app})`)
        await dispatchStep(request)
      },
    },
    dryRunner: {
      dryRun: (_target, request) => dryRun(request),
    },

    start() {
      started ??= (async () => {
        if (options.dispatch && options.dispatch !== 'http') await receiveOverMqtt(options.dispatch)
        const announcer = options.announce && options.announce !== 'http' ? await announcerOverMqtt(options.announce) : undefined
        const results = await Promise.allSettled(
          [...migrations.values()].map(async (migration) => {
            const announcement = announcementOf(migration)
            if (announcer) {
              await withRetry(() => announcer.announce(announcement, { awaitAcceptance: true }), retry, signal)
            } else {
              const target = await loom()
              await withRetry(() => target.announce(announcement), retry, signal)
            }
            await discoverOne(migration, announcer !== undefined)
          }),
        )
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
        if (failed) throw failed.reason
      })()
      return started
    },

    async stop() {
      if (!signal.aborted) lifetime.abort(new LoomError('unavailable', `worker app ${app} stopped`))
      await started?.catch(() => {})
      await Promise.allSettled(stopping.splice(0).map((stop) => stop()))
      await Promise.allSettled(executions.inFlight())
    },

    async discover(migrationId) {
      const chosen = migrationId === undefined ? [...migrations.values()] : [requireMigration(migrationId)]
      await Promise.all(chosen.map((m) => discoverOne(m, false)))
    },

    async complete(runId, stepName, report) {
      parseRunId(runId)
      if (typeof stepName !== 'string' || !stepName)
        throw new LoomError('invalid', 'stepName: must be a non-empty string', { details: { field: 'stepName' } })
      if (typeof report?.success !== 'boolean')
        throw new LoomError('invalid', 'success: must be a boolean', { details: { field: 'success' } })
      const clean: StepReport = report.metadata ? { success: report.success, metadata: report.metadata } : { success: report.success }
      const existing = executions.get(runId, stepName)
      if (existing?.state === 'reporting' && sameReport(existing.outcome, clean) && existing.done) {
        await existing.done
        // The report in flight may have succeeded meanwhile; then there is nothing left to send.
        if ((existing.state as Execution['state']) === 'reported') return
      }
      const execution = existing ?? executions.set(runId, stepName, { state: 'reporting' })
      const done = send(runId, stepName, execution, clean)
      execution.done = done.catch(() => {})
      await done
    },

    async prOpened(runId, stepName, progress) {
      const target = await loom()
      await withRetry(() => target.prOpened(runId, eventOf(runId, stepName, true, progress?.metadata)), retry, signal)
    },

    pending,
    dispatchStep,
    dryRun,
  }

  async function receiveOverMqtt(transport: MqttTransport) {
    const { onDispatch, serveDryRun } = await import('@loom/mqtt')
    const common = {
      workerApp: app,
      ...(dispatchToken ? { token: dispatchToken } : {}),
      ...(transport.topicPrefix ? { topicPrefix: transport.topicPrefix } : {}),
      // A refused message (wrong token, bad shape) is the worker's to report, like any other error it handles.
      logger: {
        warn: (message: string) => onError(new Error(message)),
        error: (message: string, error?: unknown) => onError(error ?? new Error(message)),
      },
    }
    const subscriptions = [
      onDispatch(transport.mqtt, { ...common, handler: (request) => dispatchStep(request) }),
      serveDryRun(transport.mqtt, { ...common, handler: (request) => dryRun(request) }),
    ]
    stopping.push(...subscriptions.map((s) => () => s.stop()))
    await Promise.all(subscriptions.map((s) => s.ready))
  }

  async function announcerOverMqtt(transport: MqttTransport) {
    const { mqttAnnouncer } = await import('@loom/mqtt')
    const announcer = mqttAnnouncer(transport.mqtt, {
      ...(options.token ? { token: options.token } : {}),
      ...(transport.topicPrefix ? { topicPrefix: transport.topicPrefix } : {}),
    })
    stopping.push(() => announcer.close())
    return announcer
  }

  return worker
}
