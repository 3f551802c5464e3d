/**
 * @loom/core/engine — what an `Engine` and a worker transport are made of. An engine
 * starts, waits, delivers and cancels; `createRunHost` gives it every operation on a run
 * over a store and a dispatcher, each guarded by the run's attempt, so an engine hosted in
 * another process (a Temporal worker) runs exactly the logic the local engine runs.
 * `engineContract`, `dispatcherContract` and `dryRunnerContract` (`@loom/core/testing`)
 * check the result.
 *
 * @example
 * import { createRunHost, type Engine } from '@loom/core/engine'
 *
 * const host = createRunHost({ store, dispatcher })
 * if (await host.beginStep(run, 0)) await host.dispatch(run, 0)
 */
export { createRunHost, isStoreFailure, type RunHostOptions } from './run-host'
export { isManualReview, stepEventName } from './steps'
export { dryRunAcrossApps } from './dry-runs'
export { joinRunId } from './ids'
export type {
  DryRunner,
  DryRunTarget,
  Engine,
  LoadedRun,
  RunHost,
  RunProgress,
  RunStart,
  StepDispatcher,
  StepEvent,
  WorkerTarget,
} from './ports'
