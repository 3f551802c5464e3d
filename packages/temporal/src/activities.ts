import { ApplicationFailure } from '@temporalio/common'
import { LoomError, type MigrationStore } from '@loom/core'
import {
  createRunHost,
  isManualReview,
  isStoreFailure,
  type RunHost,
  type RunStart,
  type StepDispatcher,
  type StepEvent,
} from '@loom/core/engine'

/** A run's steps as the workflow needs them: the order, and which ones wait for an operator. */
export interface RunPlan {
  /** The step to go on from: 0 for a fresh run. */
  currentStep: number
  /**
   * Set to `currentStep` when the store says the worker already accepted that step in this
   * attempt (`stepDispatchedAt`): a workflow started again (`resume`) waits for its report
   * instead of dispatching it twice. Absent from plans recorded before 0.4.
   */
  dispatchedStep?: number
  steps: { name: string; workerApp: string; review: boolean }[]
  /** Final outcomes already recorded for this attempt: events that came before the workflow did. */
  reported: StepEvent[]
}

/** The activities `loomRun` calls: core's `RunHost`, one activity per operation. */
export interface LoomActivities {
  /** The run's plan, with the outcomes already recorded, if it is running at `run.attempt`; else undefined (stale). */
  load(run: RunStart): Promise<RunPlan | undefined>
  beginStep(run: RunStart, index: number): Promise<boolean>
  /**
   * Sends step `index` to its worker app and records that it accepted it; sends nothing when the
   * store says it already did in this attempt (an earlier try whose answer was lost). A store
   * failure before the send is waited out here (`storeRetry`), not counted as a failed try.
   */
  dispatch(run: RunStart, index: number): Promise<void>
  failStep(run: RunStart, index: number, reason: string): Promise<boolean>
  /** Ends the run; true when this attempt ended with `outcome` (now, or in an earlier try of this activity). */
  finish(run: RunStart, outcome: 'completed' | 'failed'): Promise<boolean>
}

export interface LoomActivitiesOptions {
  store: MigrationStore
  dispatcher: StepDispatcher
  /** The clock; tests replace it. */
  now?: () => Date
  /**
   * How a dispatch waits out a store that fails before the send: first delay, doubled up to
   * `maxMs`, and at most `totalMs` in all; past it the store's failure is the try's. Default
   * 200 ms, 1 s, 5 s: well within the dispatch's 20 s `startToClose`, beside the send (10 s).
   */
  storeRetry?: { initialMs?: number; maxMs?: number; totalMs?: number }
}

const STORE_RETRY = { initialMs: 200, maxMs: 1_000, totalMs: 5_000 }

/**
 * The activities of `loomRun`, as thin wrappers over core's `createRunHost`: every change
 * they make is guarded by the run's attempt, so a stale workflow changes nothing. A
 * `LoomError` leaves an activity as an `ApplicationFailure` of type `LoomError:<code>`;
 * only `unavailable` is worth retrying.
 *
 * @example
 * const worker = await Worker.create({
 *   connection, taskQueue: 'loom',
 *   workflowBundle: await bundleLoomWorkflows(),
 *   activities: createActivities({ store, dispatcher: httpDispatcher() }),
 * })
 */
export function createActivities({ store, dispatcher, now, storeRetry }: LoomActivitiesOptions): LoomActivities {
  const host: RunHost = createRunHost({ store, dispatcher, ...(now ? { now } : {}) })
  const retry = { ...STORE_RETRY, ...storeRetry }
  return {
    load: (run) =>
      failureOf(async () => {
        const loaded = await host.load(run)
        if (!loaded) return undefined
        const steps = loaded.migration.steps
        const reported = await Promise.all(steps.map((s) => host.reportedOutcome(run, s.name)))
        const { currentStep, stepDispatchedAt } = loaded.run
        return {
          currentStep,
          ...(stepDispatchedAt ? { dispatchedStep: currentStep } : {}),
          steps: steps.map((s) => ({ name: s.name, workerApp: s.workerApp, review: isManualReview(s) })),
          reported: reported.filter((event): event is StepEvent => event !== undefined),
        }
      }),
    beginStep: (run, index) => failureOf(() => host.beginStep(run, index)),
    dispatch: (run, index) => failureOf(() => waitingOutStore(() => host.dispatch(run, index), retry)),
    failStep: (run, index, reason) => failureOf(() => host.failStep(run, index, reason)),
    finish: (run, outcome) => failureOf(() => host.finish(run, outcome)),
  }
}

/**
 * Runs a dispatch again while it fails on the store (`isStoreFailure`: before anything was
 * sent, so trying again cannot reach the worker twice), with capped backoff, for at most
 * `totalMs`; a short store outage thus does not use up the dispatch's tries.
 */
async function waitingOutStore<T>(operation: () => Promise<T>, { initialMs, maxMs, totalMs }: typeof STORE_RETRY): Promise<T> {
  const started = Date.now()
  for (let delay = initialMs; ; delay = Math.min(delay * 2, maxMs)) {
    try {
      return await operation()
    } catch (error) {
      if (!isStoreFailure(error) || Date.now() - started + delay > totalMs) throw error
    }
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
}

async function failureOf<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation()
  } catch (error) {
    if (!LoomError.is(error)) throw error
    throw ApplicationFailure.create({
      type: `LoomError:${error.code}`,
      message: error.message,
      nonRetryable: error.code !== 'unavailable',
      cause: error,
    })
  }
}
