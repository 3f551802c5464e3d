/**
 * The `loomRun` workflow: one run of one candidate, durable on Temporal. Its workflow id is
 * the run id. It is the loop of core's `localEngine`, made durable: every effect (reading
 * the run, moving the step in flight, dispatching, ending the run) is an activity built
 * over core's `RunHost`, so the run logic exists once and this file only decides the order.
 *
 * This module runs in Temporal's deterministic sandbox: it imports `@temporalio/workflow`
 * and types only.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
} from '@temporalio/workflow'
import type { RunProgress, RunStart, StepEvent } from '@loom/core/engine'
import type { LoomActivities } from './activities'

/** The workflow type name, as Temporal knows it. */
export const LOOM_RUN_WORKFLOW = 'loomRun'

/** A step's event: its final outcome (`done`), or progress such as a pull request opened. */
export const stepEventSignal = defineSignal<[StepEvent]>('stepEvent')

/** Where the run stands: the step in flight and what it waits for. */
export const progressQuery = defineQuery<RunProgress>('progress')

/** The error type an activity fails with when the run it acts on was cancelled or restarted meanwhile. */
export const STALE_RUN_ERROR = 'LoomError:conflict'

/**
 * The patch under which a step's outcome that arrives while its dispatch is still pending ends
 * the wait: the dispatch is cancelled and the run goes on. Before it (0.3) the workflow waited
 * for the dispatch first; only histories where an outcome came during a dispatch differ, and
 * the marker is recorded there, at the first such moment.
 */
export const DISPATCH_RACE_PATCH = 'loom-dispatch-race'

/** How a run retries the dispatch of a step before the step fails. */
export interface LoomRunOptions {
  /** How many times a step's dispatch is tried. Default 4. */
  dispatchAttempts?: number
  /** Delay before the first retry, in ms, doubled for each further one. Default 500. */
  dispatchRetryIntervalMs?: number
  /**
   * How long one try of a dispatch may take before Temporal tries again, in ms. Default 20 000:
   * above the dispatcher's own deadline (`httpDispatcher`: 10 s) plus the store retries of the
   * dispatch activity (up to 5 s) and the recording of the acceptance (about 3 s). A try whose
   * answer never reached Temporal (it restarted meanwhile) is tried again this long after it
   * began; that try finds the acceptance in the store and sends nothing.
   */
  dispatchTimeoutMs?: number
}

// Store operations are short, idempotent and guarded by the run's attempt: they run as local
// activities (in the worker, recorded as markers, no task queue round trip per call), and are
// retried until the store answers, so a run outlives a store outage instead of failing on it.
// Should a worker die mid-task they run again on replay, which their guards make harmless.
const host = proxyLocalActivities<Omit<LoomActivities, 'dispatch'>>({
  startToCloseTimeout: '30 seconds',
  retry: {
    initialInterval: '200 milliseconds',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    nonRetryableErrorTypes: ['LoomError:invalid', 'LoomError:not_found', STALE_RUN_ERROR],
  },
})

// Dispatch reaches a worker app over the network: a regular activity, visible in Temporal,
// retried a bounded number of times with backoff before the step fails.
const dispatcher = (options: LoomRunOptions) =>
  proxyActivities<Pick<LoomActivities, 'dispatch'>>({
    startToCloseTimeout: Math.max(1_000, options.dispatchTimeoutMs ?? 20_000),
    retry: {
      initialInterval: options.dispatchRetryIntervalMs ?? 500,
      backoffCoefficient: 2,
      maximumAttempts: Math.max(1, options.dispatchAttempts ?? 4),
      nonRetryableErrorTypes: ['LoomError:invalid', 'LoomError:not_found', STALE_RUN_ERROR],
    },
  })

/**
 * Runs the steps of `run` in order: dispatches each to its worker app (manual-review steps
 * are held for an operator instead), waits for its final event, and ends the run
 * `completed` after the last success or `failed` (candidate `not_started`) after a failure.
 *
 * It goes on from where the store says the run stands, so a workflow started again by
 * `temporalEngine`'s `resume` picks up the step in flight and the outcomes already recorded,
 * and waits for a step the store says was dispatched instead of dispatching it twice.
 *
 * Cancelling the workflow stops it wherever it waits and closes it as cancelled; the run
 * itself was already moved to `not_started` by `Loom.cancel`, so nothing is written.
 */
export async function loomRun(run: RunStart, options: LoomRunOptions = {}): Promise<RunProgress> {
  // Final outcomes by step name. Kept from the moment the workflow starts, so an event
  // that arrives before its step is awaited (a fast worker, a duplicate) is not lost.
  const outcomes = new Map<string, StepEvent>()
  const progress: RunProgress = { runId: run.runId, attempt: run.attempt, state: 'running' }

  setHandler(stepEventSignal, (event) => {
    // Progress updates (a pull request opened) are recorded by Loom; they do not end the wait.
    // An event of another attempt (a late delivery to a run id started again) is not this run's.
    if (event.attempt !== undefined && event.attempt !== run.attempt) return
    if (event.done && !outcomes.has(event.stepName)) outcomes.set(event.stepName, event)
  })
  setHandler(progressQuery, () => ({ ...progress }))

  const end = (state: RunProgress['state']): RunProgress => {
    progress.state = state
    delete progress.waitingFor
    return { ...progress }
  }
  // A run whose store record moved on (cancelled, or restarted as a newer attempt) ends quietly.
  const stale = () => end('cancelled')

  try {
    const plan = await host.load(run)
    if (!plan) return stale()
    // Events recorded before this workflow existed never reached it as signals; every later
    // one does, and Temporal keeps it in the history.
    for (const event of plan.reported) if (!outcomes.has(event.stepName)) outcomes.set(event.stepName, event)
    const dispatch = dispatcher(options).dispatch

    /**
     * Dispatches step `index` and answers its failure (undefined: dispatched). Should the
     * step's outcome arrive first (the worker reported before Temporal heard back from the
     * dispatch, or its answer was lost in a Temporal restart), the dispatch is cancelled and
     * the run goes on; so is a dispatch that failed once the outcome was in: the worker had the
     * step. Histories without the patch waited for the dispatch, and replay that way.
     */
    const dispatchStep = async (index: number, stepName: string): Promise<{ error: unknown } | undefined> => {
      const scope = new CancellationScope()
      // Never rejects: a failure that loses the race must not be an unhandled rejection.
      const dispatched = scope
        .run(() => dispatch(run, index))
        .then(
          () => undefined,
          (error: unknown) => ({ error }),
        )
      const reported = condition(() => outcomes.has(stepName)).then(() => 'reported' as const)
      const first = await Promise.race([dispatched, reported])
      if (first !== 'reported' && (first === undefined || isCancellation(first.error))) return first
      if (outcomes.has(stepName) && patched(DISPATCH_RACE_PATCH)) {
        // TRY_CANCEL: Temporal is asked to drop the activity, so it is not tried again later.
        scope.cancel()
        return undefined
      }
      return dispatched
    }

    for (let index = plan.currentStep; index < plan.steps.length; index++) {
      const step = plan.steps[index]!
      if (!(await host.beginStep(run, index))) return stale()
      progress.currentStep = step.name
      progress.waitingFor = step.review ? 'review' : 'worker'

      if (!outcomes.has(step.name)) {
        // A run started again by `resume` whose step in flight the worker already accepted waits for its report.
        if (!step.review && index !== plan.dispatchedStep) {
          const failed = await dispatchStep(index, step.name)
          if (failed) {
            if (isCancellation(failed.error)) throw failed.error
            if (isStale(failed.error)) return stale()
            await host.failStep(run, index, `dispatch to worker app ${step.workerApp} failed: ${reasonOf(failed.error)}`)
            return end('failed')
          }
        }
        await condition(() => outcomes.has(step.name))
      }
      const outcome = outcomes.get(step.name)!

      if (!outcome.success) return (await host.finish(run, 'failed')) ? end('failed') : stale()
    }
    return (await host.finish(run, 'completed')) ? end('completed') : stale()
  } catch (error) {
    if (isCancellation(error)) {
      end('cancelled')
      throw error
    }
    if (isStale(error)) return stale()
    throw error
  }
}

function isStale(error: unknown): boolean {
  return error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.type === STALE_RUN_ERROR
}

function reasonOf(error: unknown): string {
  const cause = error instanceof ActivityFailure && error.cause ? error.cause : error
  return cause instanceof Error ? cause.message : String(cause)
}
