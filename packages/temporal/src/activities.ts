import { ApplicationFailure } from '@temporalio/common'
import { LoomError, type LoomEvent, type MigrationStore } from '@loom/core'
import { createRunHost, isManualReview, type RunHost, type RunStart, type StepDispatcher, type StepEvent } from '@loom/core/engine'

/** A run's steps as the workflow needs them: the order, and which ones wait for an operator. */
export interface RunPlan {
  /** The step to go on from: 0 for a fresh run. */
  currentStep: number
  steps: { name: string; workerApp: string; review: boolean }[]
  /** Final outcomes already recorded for this attempt: events that came before the workflow did. */
  reported: StepEvent[]
}

/** The activities `loomRun` calls: core's `RunHost`, one activity per operation. */
export interface LoomActivities {
  /** The run's plan, with the outcomes already recorded, if it is running at `run.attempt`; else undefined (stale). */
  load(run: RunStart): Promise<RunPlan | undefined>
  beginStep(run: RunStart, index: number): Promise<boolean>
  dispatch(run: RunStart, index: number): Promise<void>
  failStep(run: RunStart, index: number, reason: string): Promise<void>
  /** Ends the run; true when this attempt ended with `outcome` (now, or in an earlier try of this activity). */
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
        const steps = loaded.migration.steps
        const reported = await Promise.all(steps.map((s) => host.reportedOutcome(run, s.name)))
        return {
          currentStep: loaded.run.currentStep,
          steps: steps.map((s) => ({ name: s.name, workerApp: s.workerApp, review: isManualReview(s) })),
          reported: reported.filter((event): event is StepEvent => event !== undefined),
        }
      }),
    beginStep: (run, index) => failureOf(() => host.beginStep(run, index)),
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
