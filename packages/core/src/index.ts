/**
 * @loom/core — the domain of Loom: run ids, candidate statuses and their rules, typed
 * errors, valibot schemas for every shape of the HTTP API, and the ports that adapters
 * implement (`MigrationStore`, `Engine`, `StepDispatcher`, `DryRunner`). `createLoom` puts
 * a store and an engine together behind the `Loom` interface; `memoryStore` and
 * `localEngine` run it on one machine with nothing else installed. It uses Web-standard
 * APIs only, so it runs on Node, Bun and edge runtimes alike.
 */
export { LoomError, LOOM_ERROR_CODES, type LoomErrorCode, type LoomErrorOptions } from './errors'
export { runId, parseRunId, joinRunId, RUN_ID_SEPARATOR } from './ids'
export { parse } from './validate'
export * from './schemas'
export type * from './ports'
export { STATUS_RULES, candidateStatusOf, emptyCounts, type StatusAction } from './status'
export { MANUAL_REVIEW, isManualReview, stepEventName } from './steps'
export { matchesQuery } from './candidate-query'
export { memoryStore, applyTransition, decideStep } from './memory-store'
export { localEngine, type LocalEngineOptions } from './local-engine'
export { createRunHost, type RunHostOptions } from './run-host'
export { httpDispatcher, httpDryRunner, type HttpWorkerOptions } from './http-worker'
export {
  createLoom,
  type Loom,
  type LoomDeps,
  type LoomInstance,
  type MigrationOverview,
  type CandidateSearchResult,
  type HealthReport,
} from './loom'
