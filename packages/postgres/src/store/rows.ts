/**
 * Rows to records and records to parameters. The store reads timestamps as epoch
 * milliseconds and JSON columns as the client parses them; every optional field that is
 * NULL in its column is absent from the record, as it was when written.
 */
import type { ActivityEntry, Candidate, StatusCounts, StepDefinition } from '@loom/core'
import { emptyCounts, joinRunId, type MigrationRecord, type RecordedStep, type RunRecord } from '@loom/core/store'

export type Row = Record<string, any>

/** A draft of an activity entry, as the store port takes it (`@loom/core/store` does not name the type). */
import type { ActivityDraft } from '@loom/core/store'

export type { ActivityDraft }

export function migrationOf(row: Row): MigrationRecord {
  const record: MigrationRecord = {
    id: row.id,
    name: row.name,
    steps: (row.steps as Row[]).map(stepOf),
    createdAt: iso(row.created_at),
  }
  if (row.description !== null) record.description = row.description
  if (row.worker_url !== null) record.workerUrl = row.worker_url
  if (row.owner !== null) record.owner = row.owner
  return record
}

function stepOf(row: Row): StepDefinition {
  const step: StepDefinition = { name: row.name, workerApp: row.workerApp }
  if (row.description !== null) step.description = row.description
  if (row.config !== null) step.config = row.config
  if (row.files !== null) step.files = row.files
  return step
}

export function candidateOf(row: Row): Candidate {
  const candidate: Candidate = { id: row.id }
  if (row.kind !== null) candidate.kind = row.kind
  if (row.metadata !== null) candidate.metadata = row.metadata
  if (row.state !== null) candidate.state = row.state
  if (row.files !== null) candidate.files = row.files
  return candidate
}

/** The run of a row selected with `runColumns`. */
export function runOf(row: Row): RunRecord {
  const run: RunRecord = {
    runId: joinRunId(row.migration_id, row.candidate_id),
    migrationId: row.migration_id,
    candidateId: row.candidate_id,
    attempt: Number(row.attempt),
    state: row.run_state,
    currentStep: Number(row.current_step),
    steps: (row.steps as Row[]).map(recordedStepOf),
    updatedAt: iso(row.updated_at),
  }
  if (row.started_at !== null) run.startedAt = iso(row.started_at)
  if (row.step_started_at !== null) run.stepStartedAt = iso(row.step_started_at)
  if (row.step_dispatched_at !== null) run.stepDispatchedAt = iso(row.step_dispatched_at)
  if (row.owner !== null) run.owner = row.owner
  // Stored as the RecordedStep[] core decided (`at` already ISO text), so it reads back as written.
  if (row.resumable !== null) run.resumable = row.resumable
  if (row.last_attempt !== null) run.lastAttempt = row.last_attempt
  return run
}

/** A step of the `steps` JSON `runColumns` aggregates. */
function recordedStepOf(s: Row): RecordedStep {
  const step: RecordedStep = { result: s.result, done: s.done, at: iso(s.at) }
  if (s.carriedFrom !== null) step.carriedFrom = Number(s.carriedFrom)
  if (s.byKind !== null) step.by = { kind: s.byKind, name: s.byName }
  return step
}

/**
 * A run's steps as one JSON parameter: [step name, success, done, result as JSON text, at,
 * carried from, reporter's kind, reporter's name], the shape `transition` unpacks with
 * `json_array_elements`.
 */
export function stepRows(steps: RecordedStep[]): string {
  return JSON.stringify(
    steps.map((s) => [
      s.result.stepName,
      s.result.success,
      s.done,
      JSON.stringify(s.result),
      s.at,
      s.carriedFrom ?? null,
      s.by?.kind ?? null,
      s.by?.name ?? null,
    ]),
  )
}

/** ISO 8601 UTC of epoch milliseconds (a number, or its text from a float8 column). */
export function iso(ms: number | string): string {
  return new Date(Number(ms)).toISOString()
}

/** JSON text for a json column, or null for an absent value. */
export function jsonOrNull(value: unknown): string | null {
  return value === undefined ? null : JSON.stringify(value)
}

/**
 * A candidate list as the schema's functions take it: JSON text of one array of strings
 * per candidate. Sent as one text parameter, it needs none of the client's array types.
 */
export function candidateRows(candidates: Candidate[]): string {
  return JSON.stringify(
    candidates.map((c) => [
      c.id,
      c.kind ?? null,
      jsonOrNull(c.metadata),
      jsonOrNull(c.state),
      jsonOrNull(c.files),
      JSON.stringify(searchTerms(c)),
    ]),
  )
}

/**
 * What `q` is matched against: the id and each metadata value, lower-cased the way
 * `matchesQuery` does it. PostgreSQL text cannot hold NUL or a lone surrogate, so NUL
 * becomes U+FFFF and a lone surrogate U+FFFD, in the terms and the needle alike.
 */
function searchTerms(candidate: Candidate): string[] {
  return [candidate.id, ...Object.values(candidate.metadata ?? {})].map(foldCase)
}

/** Text folded the way `searchTerms` folds it, so a needle and the terms compare alike. */
export function foldCase(s: string): string {
  return s.toLowerCase().replaceAll('\u0000', '\uffff').replace(LONE_SURROGATE, '\ufffd')
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/** An entry of the activity log, from a row of `activity` (its `at` as epoch milliseconds). */
export function activityOf(row: Row): ActivityEntry {
  const entry: ActivityEntry = {
    id: String(row.id),
    at: iso(row.at),
    actor: { kind: row.actor_kind, name: row.actor_name },
    type: row.type,
    migrationId: row.migration_id,
    detail: row.detail,
  }
  if (row.run_id !== null) entry.runId = row.run_id
  if (row.candidate_id !== null) entry.candidateId = row.candidate_id
  if (row.attempt !== null) entry.attempt = Number(row.attempt)
  return entry
}

/** An activity draft as the schema's functions take it (`log_activity`): JSON text, or null for none. */
export function draftOrNull(draft: ActivityDraft | undefined): string | null {
  return draft === undefined ? null : JSON.stringify(draft)
}

/** The status counts of a migration row's kept counts. */
export function countsOf(row: Row): StatusCounts {
  const counts = emptyCounts()
  counts.queued = row.n_queued
  counts.running = row.n_running
  counts.completed = row.n_completed
  counts.not_started = row.n_candidates - counts.queued - counts.running - counts.completed
  counts.failed = row.n_failed
  return counts
}
