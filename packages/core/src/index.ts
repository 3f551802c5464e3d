/**
 * @loom/core — the domain of Loom, for services that embed it: `createLoom` puts a store
 * and an engine together behind the `Loom` interface; `memoryStore` and `localEngine` run
 * it on one machine with nothing else installed; `httpDispatcher` and `httpDryRunner`
 * reach workers over HTTP. Around them: run ids, the one error type and its HTTP statuses,
 * and the valibot schemas of every shape of the HTTP API. It uses Web-standard APIs only,
 * so it runs on Node, Bun and edge runtimes alike.
 *
 * Writing a store or an engine? What adapter authors need is on `@loom/core/store` and
 * `@loom/core/engine`; the contract suites are on `@loom/core/testing`.
 */
export {
  LoomError,
  LOOM_ERROR_CODES,
  HTTP_STATUS_OF_CODE,
  type LoomErrorCode,
  type LoomErrorOptions,
} from './errors'
export { runId, parseRunId } from './ids'
export { tokensMatch } from './tokens'
export {
  ACTOR_KINDS,
  ANONYMOUS_OPERATOR,
  ActorSchema,
  SYSTEM_ACTOR,
  authorize,
  mayCall,
  parseNamedTokens,
  tokenIdentities,
  type Actor,
  type ActorKind,
  type Identities,
  type NamedTokens,
  type TokenOptions,
} from './actors'
export { DEFAULT_LIMITS, RESERVED_KEYS, readJson, topLevelStrings, type Limits } from './limits'
export { redactUrl, workerUrlPolicy, type WorkerUrlPolicy } from './worker-urls'
export { parse } from './validate'
export { digest } from './digest'
export {
  CANDIDATE_STATUSES,
  LAST_OUTCOMES,
  LOOM_EVENT_TYPES,
  MAX_OFFSET,
  limitedSchemas,
  type LimitedSchemas,
  WorkerUrlSchema,
  ActivityEntrySchema,
  ActivityPageSchema,
  ActivityQuerySchema,
  AnnounceRequestSchema,
  CancelOptionsSchema,
  CandidateQuerySchema,
  CandidateRefSchema,
  CandidateStatusSchema,
  CandidateWithStatusSchema,
  DiscoverySchema,
  DispatchStepRequestSchema,
  DryRunRequestSchema,
  DryRunResultSchema,
  ErrorBodySchema,
  ExecuteOptionsSchema,
  LoomEventSchema,
  MigrationAnnouncementSchema,
  PatchCandidatesRequestSchema,
  RegisteredMigrationSchema,
  RegisterMigrationRequestSchema,
  RunHistorySchema,
  RunInfoSchema,
  RunStatusResponseSchema,
  SlugSchema,
  StepCompletedEventSchema,
  StepResultSchema,
  SubmitCandidatesRequestSchema,
} from './schemas'
export type * from './schemas'
export type { MigrationStore, Engine, StepDispatcher, DryRunner, WorkerTarget, DryRunTarget, ActivityEntry, ActivityType } from './ports'
export { MANUAL_REVIEW, MAX_STEP_TIMEOUT_MS, isManualReview, parseDuration } from './steps'
export { memoryStore } from './memory-store'
export { localEngine, type LocalEngineOptions } from './local-engine'
export { httpDispatcher, httpDryRunner, type HttpWorkerOptions } from './http-worker'
export {
  createLoom,
  type Loom,
  type LoomDeps,
  type LoomInstance,
  type MigrationOverview,
  type CandidateSearchResult,
  type HealthReport,
  type ReconcileOptions,
} from './loom/index'
export { compareActivityIds, isActivityId, type SubscribeOptions } from './loom/events'
