/**
 * The API 0.2 response shapes, built in one place from what the store keeps. Clients
 * written against 0.2 read these fields, in this order, so the shaping lives beside
 * nothing else.
 */
import type { MigrationSummary, RunRecord } from '../ports'
import { candidateStatusOf } from '../rules'
import type { Candidate, CandidateRun, CandidateWithStatus, RegisteredMigration, RunInfo, RunStatusResponse, StepResult } from '../schemas'

/** A migration as an overview lists it: everything but the candidates and their runs. */
export type MigrationOverview = Omit<RegisteredMigration, 'candidates' | 'candidateRuns'>

export function overview({ counts, cancelledAttempts, version: _version, ...record }: MigrationSummary): MigrationOverview {
  return { ...record, counts, cancelledAttempts }
}

/** A migration with every candidate, and a run entry for each candidate that is not `not_started`. */
export function registeredMigration(summary: MigrationSummary, listed: CandidateWithStatus[]): RegisteredMigration {
  const candidateRuns: Record<string, CandidateRun> = {}
  const candidates: Candidate[] = []
  // The candidates as registered: their status goes in `candidateRuns`, how the last attempt ended in the lists only.
  for (const { status, runId: _runId, lastAttempt: _last, ...candidate } of listed) {
    candidates.push(candidate)
    if (status !== 'not_started') candidateRuns[candidate.id] = { status }
  }
  return { ...overview(summary), candidates, candidateRuns }
}

/**
 * The step results of a run, each carrying the whole candidate as Loom dispatched it
 * (a worker may report `{ id }` alone; API 0.2 consoles read the rest from the result).
 */
function stepResults(run: RunRecord, candidate: Candidate): StepResult[] {
  return run.steps.map(({ result }) => ({ ...result, candidate }))
}

/** `GET /runs/{runId}`: undefined while the candidate is `not_started`. */
export function runInfo(migrationId: string, candidate: Candidate, run: RunRecord | undefined): RunInfo | undefined {
  const status = candidateStatusOf(run?.state)
  if (!run || status === 'not_started') return undefined
  return { runId: run.runId, migrationId, candidate, status, steps: stepResults(run, candidate) }
}

const RUNTIME_STATUS: Partial<Record<RunRecord['state'], RunStatusResponse['runtimeStatus']>> = {
  running: 'RUNNING',
  completed: 'COMPLETED',
  failed: 'FAILED',
  cancelled: 'CANCELED',
}

const RESULT_STATUS = { RUNNING: 'running', COMPLETED: 'completed', FAILED: 'failed', CANCELED: 'failed' } as const

/** `GET /status/{runId}` (API 0.2's engine view): undefined for a run that was never executed. */
export function runStatusResponse(migrationId: string, candidate: Candidate, run: RunRecord | undefined): RunStatusResponse | undefined {
  const runtime = run?.startedAt === undefined ? undefined : RUNTIME_STATUS[run.state]
  if (!run || !runtime) return undefined
  return {
    instanceId: run.runId,
    runtimeStatus: runtime,
    result: { migrationId, status: RESULT_STATUS[runtime], results: stepResults(run, candidate) },
  }
}

/** One candidate with its status, as the candidate lists show it: its run id while it has a run, else how its last attempt ended. */
export function candidateWithStatus(candidate: Candidate, run: RunRecord | undefined): CandidateWithStatus {
  const status = candidateStatusOf(run?.state)
  if (status !== 'not_started' && run) return { ...candidate, status, runId: run.runId }
  return run?.lastAttempt ? { ...candidate, status, lastAttempt: run.lastAttempt } : { ...candidate, status }
}
