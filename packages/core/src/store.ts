/**
 * @loom/core/store — what a `MigrationStore` is made of. A store keeps records and makes
 * conditional writes; core decides. `decideTransition` and `decideStepReport` are the
 * status rules as pure functions: read the run, ask them, write their answer only if the
 * run is still as read. `storeContract` (`@loom/core/testing`) checks the result.
 *
 * @example
 * import { decideTransition, type MigrationStore } from '@loom/core/store'
 *
 * async transition(request) {
 *   const { run, version } = await read(request.migrationId, request.candidateId)
 *   const decision = decideTransition(run, request)
 *   if (!decision.ok) return decision
 *   // write decision.next where the version is still `version`; draw an attempt when decision.attempt === 'new'
 * }
 */
export {
  STATUS_RULES,
  candidateStatusOf,
  decideStepProgress,
  decideStepReport,
  decideTransition,
  emptyCounts,
  standingOf,
  type NextRun,
  type StatusAction,
  type StepReportDecision,
  type TransitionDecision,
} from './rules'
export { matchesQuery, totalFromCounts } from './candidate-query'
export { joinRunId } from './ids'
export { compareActivityIds } from './loom/events'
export type {
  ActivityDraft,
  ActivityEntry,
  ActivityQuery,
  ActivityType,
  CandidatePage,
  CandidatePatch,
  ClaimRunsRequest,
  DiscoveryRecord,
  MigrationDefinition,
  MigrationRecord,
  MigrationStore,
  MigrationSummary,
  RecordedStep,
  RecordStepOutcome,
  RecordStepRequest,
  RunRecord,
  RunState,
  StageCandidatesOutcome,
  StageCandidatesRequest,
  StepProgressRequest,
  TransitionRequest,
  TransitionResult,
} from './ports'
