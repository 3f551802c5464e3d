import { LoomError, type DispatchStepRequest, type DryRunResult, type StringMap } from '@loom/core'
import type { DryRunner, StepDispatcher } from '@loom/core/engine'
import { announcing } from './announcing'
import { workerContext, type WorkerOptions } from './context'
import { pending, type Pending } from './define-migration'
import { workerDryRun } from './dry-run'
import type { StepReport } from './executions'
import { workerHttpApp } from './http-app'
import { stepRunner } from './step-runner'
import { inProcess, receiveOverMqtt } from './transports'

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
   * request merged, say), for the attempt that dispatched it here (Loom refuses it with
   * `conflict` once the run is at another attempt). Retried while Loom cannot be reached;
   * throws Loom's answer otherwise (`conflict` when the run is no longer running, is at
   * another attempt, or the step already ended differently).
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
 *   token: process.env.LOOM_WORKER_TOKEN, // this worker's own token (LOOM_WORKERS on Loom's side)
 *   url: 'http://localhost:4000',
 *   migrations: [appChart],
 * })
 * serve({ fetch: worker.fetch, port: 4000 })
 * await worker.start()
 */
export function createWorker(options: WorkerOptions): Worker {
  const lifetime = new AbortController()
  const stopping: Array<() => Promise<void>> = []
  const ctx = workerContext(options, lifetime.signal, stopping)
  const steps = stepRunner(ctx)
  const endpoints = { dispatchStep: steps.dispatchStep, dryRun: workerDryRun(ctx) }
  const announcements = announcing(ctx)
  const app = workerHttpApp(endpoints, { app: ctx.app, token: ctx.dispatchToken })
  let started: Promise<void> | undefined

  return {
    workerApp: ctx.app,
    app,
    fetch: (request) => app.fetch(request),
    ...inProcess(ctx, endpoints),

    start() {
      started ??= (async () => {
        if (options.dispatch && options.dispatch !== 'http') await receiveOverMqtt(ctx, options.dispatch, endpoints)
        await announcements.announceAll()
      })()
      return started
    },

    async stop() {
      if (!lifetime.signal.aborted) lifetime.abort(new LoomError('unavailable', `worker app ${ctx.app} stopped`))
      await started?.catch(() => {})
      await Promise.allSettled(stopping.splice(0).map((stop) => stop()))
      await steps.settled()
    },

    discover: announcements.discover,
    complete: steps.complete,
    prOpened: steps.prOpened,
    pending,
    ...endpoints,
  }
}
