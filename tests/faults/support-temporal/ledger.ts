/**
 * What the fault tests count: every dispatch Loom made (and whether it was accepted), every
 * report a worker sent (and how Loom answered), and the runs' final states, so that each
 * assertion can name the runs and steps it is about.
 */
import type { DispatchStepRequest, LoomInstance, MigrationStore, StepDispatcher } from '@loom/core'

export interface DispatchRecord {
  runId: string
  attempt: number | undefined
  stepName: string
  at: number
  /** Set once the dispatch settled: accepted, or the error it failed with. */
  outcome?: { ok: true } | { ok: false; error: string }
}

export interface ReportRecord {
  runId: string
  attempt: number | undefined
  stepName: string
  at: number
  /** True when it was sent while the fault was on (Temporal or the broker down). */
  duringFault: boolean
  /** The HTTP status, or the LoomError code / error message for an in-process call. */
  answer?: number | string
  /** How long Loom took to answer, ms. */
  tookMs?: number
}

export const dispatchKey = (r: { runId: string; attempt?: number | undefined; stepName: string }) =>
  `${r.runId}#${r.attempt ?? '?'}#${r.stepName}`

export class Ledger {
  readonly dispatches: DispatchRecord[] = []
  readonly reports: ReportRecord[] = []
  /** Set by the test while its fault is on. */
  faultOn = false

  /** Wraps a dispatcher so that every call is recorded with its outcome. */
  recording(inner: StepDispatcher): StepDispatcher {
    return {
      dispatch: async (target, request) => {
        const record = this.dispatched(request)
        try {
          await inner.dispatch(target, request)
          record.outcome = { ok: true }
        } catch (error) {
          record.outcome = { ok: false, error: (error as Error).message }
          throw error
        }
      },
    }
  }

  dispatched(request: DispatchStepRequest): DispatchRecord {
    const record: DispatchRecord = { runId: request.runId, attempt: request.attempt, stepName: request.stepName, at: Date.now() }
    this.dispatches.push(record)
    return record
  }

  report(r: Omit<ReportRecord, 'at' | 'duringFault'>): ReportRecord {
    const record: ReportRecord = { ...r, at: Date.now(), duringFault: this.faultOn }
    this.reports.push(record)
    return record
  }

  /**
   * Dispatches of a (run, attempt, step) after the first one, split into those that followed
   * only failed dispatches (retries: allowed) and those that followed an accepted one (duplicates).
   */
  redispatches(): { retries: DispatchRecord[]; duplicates: DispatchRecord[] } {
    const byKey = new Map<string, DispatchRecord[]>()
    for (const d of this.dispatches) byKey.set(dispatchKey(d), [...(byKey.get(dispatchKey(d)) ?? []), d])
    const retries: DispatchRecord[] = []
    const duplicates: DispatchRecord[] = []
    for (const list of byKey.values()) {
      list.forEach((d, i) => {
        if (i === 0) return
        // A dispatch that has not settled yet may still be accepted: it counts as accepted.
        const anAcceptedBefore = list.slice(0, i).some((e) => e.outcome === undefined || e.outcome.ok)
        ;(anAcceptedBefore ? duplicates : retries).push(d)
      })
    }
    return { retries, duplicates }
  }
}

type FinalStatus = 'completed' | 'not_started' | 'running' | 'queued'

export interface RunOutcome {
  runId: string
  candidateId: string
  status: FinalStatus
  /** The index of the step in flight (meaningful while running). */
  currentStep: number
  /** Names of the steps the store holds as done, with their success. */
  steps: Array<{ stepName: string; success: boolean; done: boolean; error?: string }>
  /** The error of a not_started run, as /status shows it. */
  error?: string
}

/** Every run's status and stored steps, read through Loom and the store. */
export async function outcomes(
  loom: LoomInstance,
  store: MigrationStore,
  migrationId: string,
  runs: Array<{ runId: string; candidateId: string }>,
): Promise<RunOutcome[]> {
  return Promise.all(
    runs.map(async ({ runId, candidateId }) => {
      const { status } = await loom.getCandidate(migrationId, candidateId)
      const found = await store.getCandidate(migrationId, candidateId)
      const steps = (found?.run?.steps ?? []).map((s) => ({
        stepName: s.result.stepName,
        success: s.result.success,
        done: s.done,
        ...(s.result.metadata?.error ? { error: s.result.metadata.error } : {}),
      }))
      const error = status === 'not_started' ? steps.find((s) => !s.success)?.error : undefined
      const currentStep = found?.run?.currentStep ?? 0
      return { runId, candidateId, status: status as FinalStatus, currentStep, steps, ...(error ? { error } : {}) }
    }),
  )
}

/** Counts of each status, e.g. `{ completed: 23, running: 1 }`. */
export function tally(list: RunOutcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of list) counts[o.status] = (counts[o.status] ?? 0) + 1
  return counts
}

/**
 * Reports the store holds as done that their run did not act on: the run is still `running` at
 * that step (or before it). A lost report is one Loom kept but never moved the run with.
 */
export function lostReports(ledger: Ledger, list: RunOutcome[], stepNames: readonly string[]): ReportRecord[] {
  const byRun = new Map(list.map((o) => [o.runId, o]))
  return ledger.reports.filter((r) => {
    const run = byRun.get(r.runId)
    if (run?.status !== 'running') return false
    const stored = run.steps.some((s) => s.stepName === r.stepName && s.done)
    return stored && stepNames.indexOf(r.stepName) >= run.currentStep
  })
}

/** How often each value comes. */
export function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1
  return counts
}

/** The distinct messages (cut short) with how often each came, most frequent first. */
export function summarize(messages: string[]): string[] {
  const counts = countBy(messages.map((m) => m.replace(/\s+/g, ' ').slice(0, 160)))
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([m, n]) => `${n}× ${m}`)
}
