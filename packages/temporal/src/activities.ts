import { ApplicationFailure } from '@temporalio/common'
import {
  LoomError,
  createRunHost,
  isManualReview,
  type LoomEvent,
  type MigrationStore,
  type RunHost,
  type RunStart,
  type StepDispatcher,
  type StepEvent,
} from '@loom/core'

/** A run's steps as the workflow needs them: the order, and which ones wait for an operator. */
export interface RunPlan {
  /** The step to go on from: 0 for a fresh run. */
  currentStep: number
  steps: { name: string; workerApp: string; review: boolean }[]
}

/** The activities `loomRun` calls: core's `RunHost`, one activity per operation. */
export interface LoomActivities {
  /** The run's plan if it is running at `run.attempt`, else undefined (stale). */
  load(run: RunStart): Promise<RunPlan | undefined>
  beginStep(run: RunStart, index: number): Promise<boolean>
  reportedOutcome(run: RunStart, stepName: string): Promise<StepEvent | undefined>
  dispatch(run: RunStart, index: number): Promise<void>
  failStep(run: RunStart, index: number, reason: string): Promise<void>
  finish(run: RunStart, outcome: 'completed' | 'failed'): Promise<boolean>
}

export interface LoomActivitiesOptions {
  store: MigrationStore
  dispatcher: StepDispatcher
  /** Receives the changes runs make (a step in review, a run completed), for an in-process console. */
  onEvent?: (event: LoomEvent) => void
  /** The clock; tests replace it. */
  now?: () => Date
}

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
export function createActivities({ store, dispatcher, onEvent, now }: LoomActivitiesOptions): LoomActivities {
  const host: RunHost = createRunHost({ store, dispatcher, ...(onEvent ? { emit: onEvent } : {}), ...(now ? { now } : {}) })
  return {
    load: (run) =>
      failureOf(async () => {
        const loaded = await host.load(run)
        if (!loaded) return undefined
        return {
          currentStep: loaded.run.currentStep,
          steps: loaded.migration.steps.map((s) => ({ name: s.name, workerApp: s.workerApp, review: isManualReview(s) })),
        }
      }),
    beginStep: (run, index) => failureOf(() => host.beginStep(run, index)),
    reportedOutcome: (run, stepName) => failureOf(() => host.reportedOutcome(run, stepName)),
    dispatch: (run, index) => failureOf(() => host.dispatch(run, index)),
    failStep: (run, index, reason) => failureOf(() => host.failStep(run, index, reason)),
    finish: (run, outcome) => failureOf(() => host.finish(run, outcome)),
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
