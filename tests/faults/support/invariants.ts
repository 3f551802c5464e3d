/**
 * The invariants every fault test checks once its runs have ended, from three witnesses:
 * the store (read directly), Loom's API (`/status`, what an operator sees) and the counting
 * worker's log (what was dispatched and which reports Loom accepted).
 */
import { runStatus } from './api'
import type { StoredRun } from './fleet'
import { acceptedReports, type Logged } from './log'

export interface Summary {
  runs: number
  completed: number
  /** Back at `not_started` with a failed step whose error `/status` shows. */
  failedVisibly: number
  /** Back at `not_started` without a visible error: must be 0. */
  failedSilently: number
  /** Still `running` (or `queued`) after the bound: must be 0. */
  stuck: number
  reportsAccepted: number
  /** Accepted (2xx) but not in the store at the end: must be 0. */
  reportsLost: number
  /** Accepted although their attempt is not the run's: must be 0 (every candidate is queued once). */
  lateReportsApplied: number
  /** Distinct (run, attempt, step) dispatched. */
  dispatches: number
  /** Dispatched again for the same attempt although the first dispatch had gone through: must be 0. */
  duplicateDispatches: number
  /** Dispatched again after a dispatch that failed (the fault allowed it; see the test). */
  failedDispatches: number
}

export interface Checked {
  summary: Summary
  /** The error of each run that ended `not_started`, by run id: its failed step and that step's `metadata.error`. */
  failures: Map<string, { step: string; error: string }>
  /** What broke an invariant, one line each. */
  problems: string[]
}

type Dispatch = Extract<Logged, { kind: 'dispatch' }>

/**
 * Checks the runs of `runIds`. `failedDispatch(first, copies)` says whether a step dispatched
 * several times for one attempt was so because a dispatch failed (which the fault allows).
 */
export async function checkRuns(options: {
  loomUrl: string
  runIds: string[]
  stored: Map<string, StoredRun | undefined>
  log: Logged[]
  failedDispatch?: (first: Dispatch, copies: Dispatch[]) => boolean
}): Promise<Checked> {
  const { loomUrl, runIds, stored, log, failedDispatch = () => false } = options
  const problems: string[] = []
  const failures = new Map<string, { step: string; error: string }>()
  const summary: Summary = {
    runs: runIds.length,
    completed: 0,
    failedVisibly: 0,
    failedSilently: 0,
    stuck: 0,
    reportsAccepted: 0,
    reportsLost: 0,
    lateReportsApplied: 0,
    dispatches: 0,
    duplicateDispatches: 0,
    failedDispatches: 0,
  }

  for (const runId of runIds) {
    const run = stored.get(runId)
    if (!run) {
      problems.push(`${runId}: no run in the store`)
      continue
    }
    if (run.state === 'completed') summary.completed++
    else if (run.state === 'running' || run.state === 'queued') {
      summary.stuck++
      problems.push(`${runId}: still ${run.state} at step ${run.currentStep} (attempt ${run.attempt})`)
    } else {
      const status = await runStatus(loomUrl, runId)
      const failed = status?.result.results.find((r) => !r.success && r.metadata?.error)
      if (failed) {
        summary.failedVisibly++
        failures.set(runId, { step: failed.stepName, error: failed.metadata!.error! })
      } else {
        summary.failedSilently++
        problems.push(`${runId}: ${run.state} without an error in /status (${JSON.stringify(status)})`)
      }
    }
  }

  const accepted = acceptedReports(log).filter((r) => r.runId && runIds.includes(r.runId) && r.path.endsWith(`/event/${r.runId}`))
  summary.reportsAccepted = accepted.length
  for (const report of accepted) {
    const run = stored.get(report.runId!)
    if (!run) continue
    if (report.attempt !== run.attempt) {
      summary.lateReportsApplied++
      problems.push(
        `${report.runId}: a report of attempt ${report.attempt} for ${report.step} was accepted; the run is at attempt ${run.attempt}`,
      )
    } else if (!run.steps.some((s) => s.result.stepName === report.step && s.done)) {
      summary.reportsLost++
      problems.push(`${report.runId}: the accepted report of ${report.step} (attempt ${report.attempt}) is not in the store`)
    }
  }

  const byKey = new Map<string, Dispatch[]>()
  for (const entry of log) {
    if (entry.kind !== 'dispatch' || !entry.runId || !runIds.includes(entry.runId)) continue
    const key = `${entry.runId}|${entry.attempt}|${entry.step}`
    byKey.set(key, [...(byKey.get(key) ?? []), entry])
  }
  summary.dispatches = byKey.size
  for (const [key, copies] of byKey) {
    if (copies.length < 2) continue
    if (failedDispatch(copies[0]!, copies)) summary.failedDispatches += copies.length - 1
    else {
      summary.duplicateDispatches += copies.length - 1
      problems.push(`${key}: dispatched ${copies.length} times (generations ${copies.map((c) => c.generation).join(', ')})`)
    }
  }
  return { summary, failures, problems }
}

/** The report of a test: its figures on one line, for the suite's output. */
export function figures(name: string, summary: Summary, extra: Record<string, unknown> = {}): string {
  return `[faults] ${name}: ${JSON.stringify({ ...summary, ...extra })}`
}
