/**
 * The run page's timeline: each step of the migration joined with what its worker (or an
 * operator) reported, in the words the console shows. Pure, so it is tested without a page.
 */
import { isManualReview, type CandidateStatus, type StepDefinition, type StepResult } from '@loom/core'

/**
 * `metadata.phase` values that mean the step is still under way (the contract's conventional
 * keys). They are read before `success`: a review that waits is recorded `success: true` (as
 * API 0.2 does) and must not show as done.
 */
const IN_FLIGHT_PHASES = new Set(['in_progress', 'open', 'awaiting_review'])

export type StepState = 'pending' | 'waiting' | 'in_progress' | 'awaiting_review' | 'pr_open' | 'merged' | 'done' | 'failed'

export const STEP_STATE_LABEL: Record<StepState, string> = {
  pending: 'Pending',
  waiting: 'Waiting for the worker',
  in_progress: 'Running',
  awaiting_review: 'Awaiting review',
  pr_open: 'PR open',
  merged: 'Merged',
  done: 'Done',
  failed: 'Failed',
}

export interface TimelineStep {
  index: number
  definition: StepDefinition
  result?: StepResult
  state: StepState
  /** The step the run is on now. */
  active: boolean
  manualReview: boolean
  instructions?: string
  prUrl?: string
  /** Metadata other than the conventional keys shown elsewhere. */
  details: Array<[string, string]>
}

const SHOWN_ELSEWHERE = new Set(['phase', 'prUrl', 'instructions'])

/** Whether a reported result ends its step (a failure always does; progress carries an in-flight phase). */
export function isFinal(result: StepResult): boolean {
  const phase = result.metadata?.phase
  return !(phase !== undefined && IN_FLIGHT_PHASES.has(phase))
}

function stateOf(result: StepResult | undefined): StepState {
  if (!result) return 'pending'
  const phase = result.metadata?.phase
  if (!isFinal(result)) return phase === 'open' ? 'pr_open' : phase === 'awaiting_review' ? 'awaiting_review' : 'in_progress'
  if (!result.success) return 'failed'
  return phase === 'merged' ? 'merged' : 'done'
}

/**
 * Joins step definitions with reported results.
 *
 * @example
 * timeline(migration.steps, run.steps, 'running').find((s) => s.active)
 */
export function timeline(steps: StepDefinition[], results: StepResult[], status: CandidateStatus | 'failed'): TimelineStep[] {
  const byName = new Map(results.map((r) => [r.stepName, r]))
  let activeFound = false
  return steps.map((definition, index) => {
    const result = byName.get(definition.name)
    let state = stateOf(result)
    let active = false
    if (status === 'running' && !activeFound && (!result || !isFinal(result))) {
      active = true
      activeFound = true
      if (state === 'pending') state = isManualReview(definition) ? 'awaiting_review' : 'waiting'
    }
    const instructions = result?.metadata?.instructions ?? definition.config?.instructions
    const prUrl = result?.metadata?.prUrl
    return {
      index,
      definition,
      ...(result ? { result } : {}),
      state,
      active,
      manualReview: isManualReview(definition),
      ...(instructions ? { instructions } : {}),
      ...(prUrl ? { prUrl } : {}),
      details: Object.entries(result?.metadata ?? {}).filter(([key]) => !SHOWN_ELSEWHERE.has(key)),
    }
  })
}

/** The stat cards of a run: steps, completed, failed, pull requests and how many merged. */
export function runStats(steps: TimelineStep[]) {
  return {
    total: steps.length,
    completed: steps.filter((s) => s.state === 'done' || s.state === 'merged').length,
    failed: steps.filter((s) => s.state === 'failed').length,
    pullRequests: steps.filter((s) => s.prUrl).length,
    merged: steps.filter((s) => s.state === 'merged').length,
  }
}
