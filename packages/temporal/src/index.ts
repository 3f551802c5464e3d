/**
 * @loom/temporal — Loom's `Engine` on Temporal, for production and scale. Each run is a
 * `loomRun` workflow whose workflow id is the run id: `temporalEngine({ client, taskQueue })`
 * starts, cancels, signals and queries runs from the service that embeds Loom, and
 * `createLoomWorker({ connection, taskQueue, store, dispatcher })` hosts the workflow and its
 * activities, which are thin wrappers over core's `RunHost` so the run logic exists once.
 * Needs Node (or Bun) and the `@temporalio/*` packages as peers.
 */
export { temporalEngine, type TemporalEngineOptions } from './engine'
export { createLoomWorker, bundleLoomWorkflows, loomWorkflowsPath, type LoomWorkerOptions } from './worker'
export { createActivities, type LoomActivities, type LoomActivitiesOptions, type RunPlan } from './activities'
export {
  loomRun,
  stepEventSignal,
  progressQuery,
  LOOM_RUN_WORKFLOW,
  STALE_RUN_ERROR,
  type LoomRunOptions,
} from './workflows'
