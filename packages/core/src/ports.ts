/**
 * The ports: what Loom needs from the outside world. Core implements each once for one
 * machine (`memoryStore`, `localEngine`, `httpDispatcher`, `httpDryRunner`); adapters
 * implement them for real infrastructure. Every guarantee stated here is tested by the
 * contract suites of `@loom/core/testing`, which every implementation must pass.
 */
import type {
  CancelledAttempt,
  Candidate,
  LastAttempt,
  CandidateQuery,
  CandidateStatus,
  CandidateWithStatus,
  DispatchStepRequest,
  DryRunRequest,
  DryRunResult,
  StatusCounts,
  StepDefinition,
  StepResult,
} from './schemas'
import type { StatusAction } from './rules'
import type { Actor } from './actors'

// ---------------------------------------------------------------------------------------
// Records the store keeps
// ---------------------------------------------------------------------------------------

/** A migration definition as stored, without its candidates. */
export interface MigrationRecord {
  id: string
  name: string
  description?: string
  steps: StepDefinition[]
  /** Where HTTP dispatch and dry-run reach the announcing worker. */
  workerUrl?: string
  /** The worker the migration belongs to: the first that announced it. None for one an operator registered and no worker announced yet. */
  owner?: string
  createdAt: string
}

/** A migration with the figures an overview needs. */
export interface MigrationSummary extends MigrationRecord {
  /** Kept by the store as candidates and runs change (never counted on read), so reading it costs the same at any size. */
  counts: StatusCounts
  cancelledAttempts: CancelledAttempt[]
  /** The migration's version, as {@link MigrationStore.versions} gives it. */
  version: string
}

/** The definition part of a migration, as announced or registered. */
export type MigrationDefinition = Omit<MigrationRecord, 'createdAt' | 'owner'>

/**
 * Where a run stands. The candidate's status is derived from it: `queued`, `running` and
 * `completed` are shown as such; `failed`, `cancelled` and `dequeued` all mean `not_started`
 * (the record is kept so that the last attempt's outcome and attempt number survive).
 */
export type RunState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'dequeued'

/** One step's reported outcome within a run. */
export interface RecordedStep {
  result: StepResult
  /** True once the step has ended (success or failure); false for progress such as a PR opened. */
  done: boolean
  at: string
  /**
   * Set on a step carried over by `execute` with `resume`: the attempt whose result this is.
   * The step is not run again in the attempt that carries it.
   */
  carriedFrom?: number
  /** Who reported it, when a worker or an operator did (absent for Loom's own records: a deadline, a review awaited). */
  by?: Actor
}

/** The run of one candidate in one migration: its current attempt only. */
export interface RunRecord {
  runId: string
  migrationId: string
  candidateId: string
  /** Grows by one each time the candidate is queued from `not_started`; guards against stale engines. */
  attempt: number
  state: RunState
  /** Index of the step in flight while `running`; the steps before it have succeeded. */
  currentStep: number
  /** Reported steps, in the order they were first reported. */
  steps: RecordedStep[]
  /** Set by Execute; absent for a run that was only ever queued. */
  startedAt?: string
  /** When the step in flight (`currentStep`) began, while `running`: its deadline counts from here. */
  stepStartedAt?: string
  /**
   * When the worker accepted the step in flight, while `running`; absent until then. A run
   * resumed after its process stopped dispatches the step in flight only when this is absent.
   */
  stepDispatchedAt?: string
  /**
   * The process whose engine drives the run while `running` (set by Execute). Another process's
   * reconciler takes the run over when this one stops renewing its lease (`MigrationStore.claimRuns`).
   */
  owner?: string
  /**
   * The steps that succeeded in the attempt before this one, in order, up to the first that did
   * not: what Execute with `resume` carries over. Set by Queue; absent when there is nothing to carry.
   */
  resumable?: RecordedStep[]
  /**
   * Set when the attempt ended without completing (state `failed`, `cancelled` or `dequeued`):
   * how, when, by whom and why, as `decideTransition` wrote it. The candidate lists show it,
   * and filter by its outcome.
   */
  lastAttempt?: LastAttempt
  updatedAt: string
}

/**
 * What an activity entry records: a run moving (`run.<action>`), a step dispatched or reported,
 * a migration announced or deleted, candidates submitted.
 */
export type ActivityType =
  | `run.${StatusAction}`
  | 'step.dispatched'
  | 'step.reported'
  | 'migration.announced'
  | 'migration.deleted'
  | 'candidates.submitted'
  | 'candidates.patched'

/** One change, as the activity log keeps it, before the store gives it its place. */
export interface ActivityDraft {
  at: string
  /** Who caused it. */
  actor: Actor
  type: ActivityType
  migrationId: string
  runId?: string
  candidateId?: string
  /** The run's attempt. For a transition that starts a new attempt, the store sets the one it draws. */
  attempt?: number
  /** What else is known: a step's name and outcome, an error, a reason, a count. JSON values only. */
  detail: Record<string, unknown>
}

/** An entry of the activity log. */
export interface ActivityEntry extends ActivityDraft {
  /**
   * Its place in the store's log: decimal digits, greater for entries written later, whichever
   * process wrote them. Compare ids with `compareActivityIds`, as numbers (they may pass 2^53).
   */
  id: string
}

/** Which entries of the log to read, oldest first. */
export interface ActivityQuery {
  /** Only this migration's entries. Without it, the whole log, every migration's (what `Loom.subscribe` follows). */
  migrationId?: string
  /** Only this candidate's entries (its run's history); needs `migrationId`. */
  candidateId?: string
  /** Only entries after this id (a cursor from an earlier read). */
  after?: string
  /** At most this many. */
  limit: number
  /** The newest `limit` entries (after `after`, if given) instead of the oldest, newest first. */
  newest?: boolean
}

/** A request to move a candidate's run by one action of the status rules, applied as one compare-and-set. */
export interface TransitionRequest {
  migrationId: string
  candidateId: string
  /** The action; `STATUS_RULES` says which statuses it is allowed from and where it moves the run. */
  action: StatusAction
  /** When set, the transition applies only to this attempt of the run. */
  attempt?: number
  /** The timestamp of the change (ISO 8601 UTC); used for `startedAt` and `cancelledAt`. */
  at: string
  /** `execute` only: the process whose engine will drive the run (stored as `RunRecord.owner`). */
  owner?: string
  /** `execute` only: carry over the run's `resumable` steps and start at the first step after them. */
  resume?: boolean
  /** Who asks; recorded in the activity log with the change. Default: Loom itself. */
  by?: Actor
  /** Why, in the operator's words (a cancel's reason); recorded with the change. */
  reason?: string
}

/** A step of a running run moving on: begun (now in flight), or dispatched (its worker accepted it). */
export interface StepProgressRequest {
  migrationId: string
  candidateId: string
  attempt: number
  /** The step's index in the migration's steps. */
  index: number
  phase: 'begun' | 'dispatched'
  at: string
}

/** A process taking over the running runs whose owner stopped renewing its lease. */
export interface ClaimRunsRequest {
  /** The claiming process. */
  owner: string
  /** Now: an owner whose lease ended before this is gone. */
  at: string
  /** At most this many runs per call. */
  limit: number
}

export type TransitionResult =
  | { ok: true; run: RunRecord; previous: CandidateStatus }
  | { ok: false; reason: 'not_found' }
  | { ok: false; reason: 'conflict'; status: CandidateStatus; attempt?: number }

export interface RecordStepRequest {
  migrationId: string
  candidateId: string
  attempt?: number
  result: StepResult
  /** True for a step's final outcome, false for a progress update. */
  done: boolean
  at: string
  /** Who reports; recorded in the activity log with the report. Default: Loom itself. */
  by?: Actor
}

export type RecordStepOutcome =
  /** Stored. */
  | { outcome: 'recorded'; run: RunRecord }
  /** The same final outcome was already stored; nothing changed. */
  | { outcome: 'duplicate'; run: RunRecord }
  /** The step already ended with a different outcome, or the update comes after its end. */
  | { outcome: 'step_ended'; run: RunRecord }
  /** The run is not running (or not this attempt); `status` is the candidate's, `attempt` the run's current one if it has a run. */
  | { outcome: 'not_running'; status: CandidateStatus; attempt?: number }
  | { outcome: 'not_found' }

/** A change to part of a candidate list (`MigrationStore.patchCandidates`). */
export interface CandidatePatch {
  /** Candidates to write: one the migration has is replaced where it stands, a new one is appended. */
  upsert: Candidate[]
  /** Ids of candidates to drop; none of them is in `upsert`. */
  remove: string[]
}

/** A discovery as it is opened: a new candidate list, staged in parts, until it is committed or expires. */
export interface DiscoveryRecord {
  /** Unique among every migration's discoveries (core draws a random UUID). */
  id: string
  migrationId: string
  /** When it expires unless a part comes first (ISO 8601): an expired discovery is as gone as an unknown one. */
  expiresAt: string
}

/** Candidates staged into a discovery (`MigrationStore.stageCandidates`). */
export interface StageCandidatesRequest {
  migrationId: string
  discoveryId: string
  /** In the order they are to be listed, after those staged before. Their ids are unique among themselves. */
  candidates: Candidate[]
  /** Now: a discovery whose `expiresAt` is not after this is not found. */
  at: string
  /** The discovery's new expiry, once these are staged. */
  expiresAt: string
  /** The most candidates the discovery may hold in all: a part that would pass it stages nothing. */
  limit: number
}

export type StageCandidatesOutcome =
  /** Staged; `total` is how many the discovery holds now. */
  | { outcome: 'staged'; total: number }
  /** No such discovery of this migration (never opened, committed, expired, or its migration deleted). */
  | { outcome: 'not_found' }
  /** A candidate of the part was staged before, by an earlier part: nothing of the part was staged. */
  | { outcome: 'duplicate'; candidateId: string }
  /** The part would take the discovery past `limit`: nothing of it was staged; `total` is how many it holds. */
  | { outcome: 'too_many'; total: number }

export interface CandidatePage {
  candidates: CandidateWithStatus[]
  /** How many candidates match the query without `limit` and `offset`. */
  total: number
}

// ---------------------------------------------------------------------------------------
// MigrationStore
// ---------------------------------------------------------------------------------------

/**
 * Where migrations, candidates, runs and cancelled attempts live.
 *
 * Records returned are copies: mutating them never changes the store.
 */
export interface MigrationStore {
  /**
   * Creates the migration, or replaces its name, description, steps and workerUrl while
   * keeping its `createdAt`, runs and cancelled attempts. When `candidates` is given it
   * replaces the candidate list as {@link MigrationStore.replaceCandidates} does, in the
   * same atomic operation. Returns the stored record.
   *
   * `claimant`, a worker's name, makes ownership part of the same atomic operation: a
   * migration without an owner (a new one too) becomes the claimant's; one that belongs to
   * another worker is left exactly as it was, and the record returned names that owner. Of
   * two workers announcing a new migration at once, exactly one owns it. Without a claimant
   * the owner is kept (a new migration has none). The owner never changes once set.
   *
   * `activity` is written to the log in the same atomic operation, when the upsert applied.
   */
  upsertMigration(
    definition: MigrationDefinition,
    candidates?: Candidate[],
    claimant?: string,
    activity?: ActivityDraft,
  ): Promise<MigrationRecord>

  /** The migration, or undefined when there is none with this id. */
  getMigration(id: string): Promise<MigrationSummary | undefined>

  /**
   * The migration's definition alone (steps, worker URL, owner), without counts or cancelled
   * attempts: what a run's step needs, read at the same cost however many candidates and
   * attempts the migration has. Undefined when there is none with this id.
   */
  getMigrationRecord(id: string): Promise<MigrationRecord | undefined>

  /** Every migration with its status counts, oldest first. */
  listMigrations(): Promise<MigrationSummary[]>

  /**
   * Deletes the migration with its candidates, runs and cancelled attempts. Atomic: it
   * refuses (`running`) while any candidate is running, so a delete never races a run. Its
   * activity log is kept (it is the record of what happened, the delete included): `activity`
   * is written in the same atomic operation when the migration was deleted.
   */
  deleteMigration(id: string, activity?: ActivityDraft): Promise<'deleted' | 'not_found' | 'running'>

  /**
   * Replaces the candidate list of a migration. A candidate whose run is `queued`,
   * `running` or `completed` is kept with its run even when the new list omits it.
   * Returns false when the migration does not exist. `activity` is written to the log in the
   * same atomic operation when the list was replaced.
   */
  replaceCandidates(migrationId: string, candidates: Candidate[], activity?: ActivityDraft): Promise<boolean>

  /**
   * Changes part of the candidate list, atomically: each candidate of `patch.upsert` the
   * migration has is replaced where it stands (its place in the list and its run kept), each
   * new one is appended after the last, in the order given; each candidate of `patch.remove` is
   * dropped with its run, unless that run is `queued`, `running` or `completed` (kept, as
   * {@link MigrationStore.replaceCandidates} keeps it); ids the migration does not have are
   * ignored. Costs time in proportion to the patch, not to the migration. Returns false when
   * the migration does not exist. `activity` is written in the same atomic operation when it
   * applied.
   */
  patchCandidates(migrationId: string, patch: CandidatePatch, activity?: ActivityDraft): Promise<boolean>

  /**
   * Opens a discovery: an empty candidate list staged beside the migration's, which
   * {@link MigrationStore.stageCandidates} fills in parts (from any process sharing the store)
   * and {@link MigrationStore.commitDiscovery} swaps in. Returns false when the migration does
   * not exist. Deleting the migration deletes its discoveries.
   */
  openDiscovery(discovery: DiscoveryRecord): Promise<boolean>

  /**
   * Appends a part to a discovery of `request.migrationId` that has not expired at
   * `request.at`, and moves its expiry to `request.expiresAt`, atomically: a part whose
   * candidate an earlier part staged already (`duplicate`), or that would take the discovery
   * past `request.limit` (`too_many`), stages nothing. Parts sent at once are each staged
   * whole, one after the other.
   */
  stageCandidates(request: StageCandidatesRequest): Promise<StageCandidatesOutcome>

  /**
   * Replaces the migration's candidate list with a discovery's staged candidates, in the order
   * staged, exactly as {@link MigrationStore.replaceCandidates} would, and deletes the
   * discovery, in one atomic operation; costs time in proportion to the list. `not_found`, and
   * nothing changed, when the migration has no such discovery unexpired at `at`. `activity` is
   * written in the same operation when committed, with `detail.count` set by the store to the
   * number of candidates committed.
   */
  commitDiscovery(migrationId: string, discoveryId: string, at: string, activity?: ActivityDraft): Promise<'committed' | 'not_found'>

  /**
   * Deletes up to `limit` discoveries that expired before `before` (ISO 8601), with what they
   * staged; returns how many (fewer than `limit`: none is left). What `createLoom`'s reconciler
   * calls, about once an hour.
   */
  pruneDiscoveries(before: string, limit: number): Promise<number>

  /**
   * The migration's candidates joined with their status (and, while `not_started` after an
   * attempt, the run's `lastAttempt`), in submission order, filtered by `status`, by
   * `lastOutcome` (the outcome of that `lastAttempt`) and by `q` (a case-insensitive substring
   * of the id or a metadata value), then paged by `offset` and `limit`, or by `after` (the
   * page starts after that candidate; empty when the migration has no candidate with that id;
   * never given with `offset`).
   * `total` counts every match, whatever the page. Undefined when the migration does not exist.
   *
   * Costs time in proportion to the page, not to the migration, unless `offset` is large or
   * `q` matches many candidates (counting them costs in proportion to the matches): `total`
   * comes from the counts the store keeps whenever the query has no `q`.
   */
  listCandidates(migrationId: string, query?: CandidateQuery): Promise<CandidatePage | undefined>

  /**
   * Each migration's version, by id: all of them, or only those of `ids` that exist. A
   * version is an opaque string that changes with every change the migration's reads can
   * show (its definition, its candidates, any candidate's status or last attempt, a cancelled
   * attempt) and with nothing else, as seen by every process sharing the store: what HTTP
   * `ETag`s are made of. Costs no read of candidates or runs.
   */
  versions(ids?: string[]): Promise<Map<string, string>>

  /** One candidate and its run record, or undefined when either the migration or the candidate is unknown. */
  getCandidate(migrationId: string, candidateId: string): Promise<{ candidate: Candidate; run?: RunRecord } | undefined>

  /**
   * Moves a candidate's run by `request.action` as one atomic compare-and-set. The store
   * reads the run, asks `decideTransition` (`@loom/core/store`) what the action does, and
   * writes that answer only if the run is still as it was read; the audit record the
   * decision carries (a cancelled attempt) is written in the same operation. Of concurrent
   * calls for the same candidate, exactly one succeeds; the others get `conflict` with the
   * status they found, and change nothing. A decision with `attempt: 'new'` gets a number
   * greater than every attempt the store has handed out.
   */
  transition(request: TransitionRequest): Promise<TransitionResult>

  /**
   * Stores a step's outcome on a running run, atomically with the status check: the store
   * reads the run, asks `decideStepReport` and writes a `recorded` decision only if the run
   * is still as it was read. A final outcome equal to the one already stored is a
   * `duplicate` and changes nothing; a different one, or a progress update after the step
   * ended, is `step_ended`.
   */
  recordStep(request: RecordStepRequest): Promise<RecordStepOutcome>

  /**
   * Records a step of a running run moving on, as `decideStepProgress` (`@loom/core/store`)
   * decides: `begun` makes step `index` the step in flight (keeping its `stepStartedAt` when
   * it already was), `dispatched` records that its worker accepted it. Returns false, changing
   * nothing, when the run is no longer running at that attempt (or, for `dispatched`, at that step).
   */
  markStep(request: StepProgressRequest): Promise<boolean>

  /** Every run in the given state, across migrations (the reconciler reads the `running` ones). */
  listRuns(state: RunState): Promise<RunRecord[]>

  /**
   * The activity log of a migration (or of one of its candidates), oldest first, after the
   * `after` cursor, at most `limit` entries. Every change the store makes writes its entry in
   * the same atomic operation: a transition (the entry of `decideTransition`), a step report
   * (of `decideStepReport`), a step dispatched (of `decideStepProgress`), and the drafts given
   * to `upsertMigration`, `replaceCandidates` and `deleteMigration`. A refused change writes
   * none. Costs time in proportion to the page, not to the log.
   *
   * Ids are decimal digits, and an entry written later has a greater number than every entry
   * a read could have returned before it was written (`compareActivityIds`): a reader that
   * keeps the last id it read, and reads after it, sees every entry once, in order.
   */
  listActivity(query: ActivityQuery): Promise<ActivityEntry[]>

  /**
   * Calls `listener` soon after entries are added to the log: by this process, and by every
   * other process sharing the store where the store can tell (PostgreSQL's LISTEN/NOTIFY).
   * A wake-up, not the entries: several may come as one call, and a call may find nothing
   * new, so the listener reads the log from its own cursor. Costs nothing while no entry is
   * added (no polling). Returns the function that stops the calls.
   */
  watchActivity(listener: () => void): () => void

  /**
   * Deletes up to `limit` of the oldest entries written before `before` (ISO 8601); returns how
   * many it deleted (fewer than `limit`: none older is left). What `createLoom`'s
   * `activityRetention` calls; a run's history then starts at its oldest entry kept.
   */
  pruneActivity(before: string, limit: number): Promise<number>

  /**
   * Records that process `owner` is alive until `until` (ISO 8601). A process renews this
   * lease while it runs; the runs it owns are claimable by others once it lapses.
   */
  renewLease(owner: string, until: string): Promise<void>

  /**
   * Takes over up to `limit` running runs whose owner is unset, or holds no lease, or a lease
   * that ended before `request.at`: sets their owner to `request.owner` and returns them. Each
   * run is taken with a compare-and-set, so of processes claiming at once each run goes to
   * exactly one of them.
   */
  claimRuns(request: ClaimRunsRequest): Promise<RunRecord[]>

  /** Resolves when the store can serve requests; throws otherwise. */
  ping(): Promise<void>
}

// ---------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------

/** What an engine is given to start a run; the rest is read from the store. */
export interface RunStart {
  runId: string
  migrationId: string
  candidateId: string
  attempt: number
  /**
   * The process meant to drive the run, for engines whose runs live in one process (the local
   * engine): once the store names another owner, the run is stale here. Engines that are
   * durable on their own (Temporal) leave it out.
   */
  owner?: string
}

/** A step event as the engine receives it. */
export interface StepEvent {
  stepName: string
  success: boolean
  metadata?: Record<string, string>
  /** False for a progress update (a pull request opened): recorded, but the step is still awaited. */
  done: boolean
  /** The attempt the event belongs to; an engine ignores an event of another attempt than its run's. */
  attempt?: number
}

/** Where a run stands in its engine. */
export interface RunProgress {
  runId: string
  attempt: number
  state: 'running' | 'completed' | 'failed' | 'cancelled'
  /** The step the run is waiting on while `running`. */
  currentStep?: string
  /** `worker` after dispatch, `review` for a manual-review step. */
  waitingFor?: 'worker' | 'review'
}

/**
 * Runs the steps of a run, in order, durably enough for its environment.
 *
 * `createLoom` owns the candidate's status: it moves `queued → running` before `start` and
 * `→ cancelled` before `cancel`. The engine dispatches steps, waits for their events and
 * ends the run through the {@link RunHost} (`completed` after the last success,
 * `not_started` after a failure), guarding each change by the run's attempt.
 */
export interface Engine {
  /**
   * Receives the operations runs need. `createLoom` calls it once, before any other method.
   * (Runs left running by a process that stopped come back through {@link Engine.resume},
   * called by `createLoom`'s reconciler.)
   */
  attach?(host: RunHost): void | Promise<void>

  /**
   * Starts the run whose id is `run.runId`. Throws `unavailable` when the engine cannot be
   * reached (nothing was started) and `conflict` when a run with this id is still open.
   */
  start(run: RunStart): Promise<void>

  /**
   * Makes sure a run the store says is running (at `run.attempt`) is being driven: the
   * reconciler calls it for the runs this process owns when their loop or workflow may be
   * gone (after a restart, or a run that has not moved for a while). Starts the run where
   * the store says it is when the engine has no live run of that attempt; does nothing when
   * it has. Throws `unavailable` when the engine cannot be reached.
   */
  resume?(run: RunStart): Promise<void>

  /** Stops the run: no further step is dispatched and the run ends. Idempotent. */
  cancel(runId: string): Promise<void>

  /**
   * Delivers a step event, already recorded in the store. Idempotent: an event for a step
   * the run is not waiting on is ignored, and an event that arrives before the run waits
   * for its step is not lost (the run finds it when it gets there).
   */
  deliver(runId: string, event: StepEvent): Promise<void>

  /** The run's progress in the engine, or undefined when the engine has no such run. */
  progress(runId: string): Promise<RunProgress | undefined>

  /** Resolves when the engine can start runs; throws otherwise. */
  health?(): Promise<void>

  /** Stops work this engine started in this process. */
  close?(): Promise<void>
}

/** A run as an engine needs it: the run record, its migration and its candidate. */
export interface LoadedRun {
  run: RunRecord
  migration: MigrationRecord
  candidate: Candidate
}

/**
 * The operations an engine performs on runs, built by `createRunHost` over a store and a
 * dispatcher. Each one is guarded by the run's attempt: when the run was cancelled or
 * restarted meanwhile, it changes nothing and reports that the run is stale.
 */
export interface RunHost {
  /** The run if it is running at `run.attempt`, else undefined (stale). */
  load(run: RunStart): Promise<LoadedRun | undefined>
  /**
   * Makes step `index` the step in flight. For a manual-review step it records the
   * `awaiting_review` progress the console shows. Returns false when the run is stale.
   */
  beginStep(run: RunStart, index: number): Promise<boolean>
  /** The final outcome already recorded for a step, if any (an event that came early). */
  reportedOutcome(run: RunStart, stepName: string): Promise<StepEvent | undefined>
  /**
   * Sends step `index` to its worker app and records that the worker accepted it
   * (`RunRecord.stepDispatchedAt`), unless the store says it already did in this attempt, or
   * the step already has its outcome: then it sends nothing, so a run resumed after a restart
   * does not send its step again. (A dispatch whose answer was lost before the acceptance was
   * recorded is tried again, and may reach the worker twice.) Throws `conflict` when the run went stale,
   * `unavailable` with `details.dependency: 'store'` when the store failed before the send
   * (`isStoreFailure`: worth retrying, and not a failure of the worker), and otherwise what the
   * dispatcher threw.
   */
  dispatch(run: RunStart, index: number): Promise<void>
  /**
   * Records that step `index` failed without a worker report (its dispatch failed, its deadline
   * passed), then fails the run. True when this failure ended the run; false when the run went
   * stale or the step had ended otherwise first (its report came): then nothing changed.
   */
  failStep(run: RunStart, index: number, reason: string): Promise<boolean>
  /**
   * Ends the run: `completed` after the last success, `failed` (candidate `not_started`) after
   * a failure. Idempotent: true when this attempt has ended with this outcome (now or before),
   * false when the run went stale.
   */
  finish(run: RunStart, outcome: 'completed' | 'failed'): Promise<boolean>
}

// ---------------------------------------------------------------------------------------
// Worker transports
// ---------------------------------------------------------------------------------------

/** Which worker a request is for: the step's worker app, and the announcing worker's URL. */
export interface WorkerTarget {
  workerApp: string
  workerUrl?: string
  /** The worker the migration belongs to, if any: whose token a dispatcher presents (`HttpWorkerOptions.token`). */
  owner?: string
}

/** Which workers a dry run asks: every worker app of the migration's steps, and the announcing worker's URL. */
export interface DryRunTarget {
  workerApps: string[]
  workerUrl?: string
  /** The worker the migration belongs to, if any. */
  owner?: string
}

/** Delivers a step to the worker app that runs it. */
export interface StepDispatcher {
  /**
   * Hands `request`, unchanged, to the worker of `target.workerApp`. Resolves once that worker
   * has accepted it, not before (it reports the outcome later through Complete). Throws
   * `unavailable` when it could not be delivered: no worker, no answer in time, or the worker
   * failed (worth retrying). Throws `invalid`, `unauthorized` (the worker refused Loom's token,
   * or it was missing), `not_found` or `too_large` when the worker refused it, at once and
   * having asked once (retrying will not help). Never `conflict`: that code is the run host's
   * "run went stale", so a worker answering `conflict` is `invalid`.
   */
  dispatch(target: WorkerTarget, request: DispatchStepRequest): Promise<void>
}

/** Asks workers for the file changes a run would make, without making them. */
export interface DryRunner {
  /**
   * Asks each worker app of `target` that has a step to dispatch (an app whose steps are all
   * manual review is not asked), with `request` unchanged, and returns one entry per step of
   * `request.steps`, in order. A step takes the diffs of a worker that handles it over any
   * worker's `skipped`; manual-review steps, and steps no worker handles, are `skipped`; a
   * step whose worker app did not answer carries that failure in `error`. Throws
   * `unavailable` when no worker answered, with `details.dependency` naming the worker apps;
   * a worker's refusal counts as no answer, so a worker refusing Loom's token is
   * `unavailable`, never `unauthorized` (that code means the operator's own token is wrong).
   */
  dryRun(target: DryRunTarget, request: DryRunRequest): Promise<DryRunResult>
}
