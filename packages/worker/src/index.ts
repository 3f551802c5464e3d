/**
 * @loom/worker — the worker SDK. A worker says *how* a migration is done: `defineMigration`
 * declares its steps, their handlers and how candidates are discovered; `createWorker`
 * announces the migrations to Loom (over HTTP or MQTT), discovers and submits candidates
 * once an announcement is accepted, runs the steps Loom dispatches (over HTTP with a Hono
 * app you mount, or over MQTT) and reports each outcome back, and answers dry runs with
 * the diffs of every step stacked on the ones before it. Calls both ways carry the worker's
 * own token: Loom knows the worker by it (and gives it the migrations it announces), and a
 * dispatch without it is refused.
 */
export {
  defineMigration,
  pending,
  isManualReviewStep,
  type Migration,
  type MigrationSpec,
  type StepSpec,
  type StepContext,
  type StepHandler,
  type StepOutcome,
  type Pending,
  type DryRunContext,
  type DryRunHandler,
  type DryRunFiles,
  type FileChange,
} from './define-migration'
export { createWorker, type Worker } from './worker'
export type { DiscoveryParts, WorkerOptions, MqttTransport } from './context'
export { stackedDryRun } from './dry-run'
export type { StepReport } from './executions'
export type { RetryOptions } from './retry'
