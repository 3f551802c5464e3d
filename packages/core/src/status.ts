import type { CandidateStatus, StatusCounts } from './schemas'
import type { RunState } from './ports'

/** The candidate status a run state shows as: a run that failed, was cancelled or dequeued is `not_started`. */
export function candidateStatusOf(state: RunState | undefined): CandidateStatus {
  return state === 'queued' || state === 'running' || state === 'completed' ? state : 'not_started'
}

/** Zeroed counts, one per candidate status. */
export function emptyCounts(): StatusCounts {
  return { not_started: 0, queued: 0, running: 0, completed: 0 }
}

/**
 * The status rules of the HTTP contract: for each action, the statuses it is allowed from
 * and the run state it moves to. `createLoom` and every engine take their transitions from here.
 */
export const STATUS_RULES = {
  queue: { from: ['not_started'], to: 'queued' },
  dequeue: { from: ['queued'], to: 'dequeued' },
  execute: { from: ['queued'], to: 'running' },
  cancel: { from: ['queued', 'running'], to: 'cancelled' },
  complete: { from: ['running'], to: 'completed' },
  fail: { from: ['running'], to: 'failed' },
  /** Undoes an Execute whose engine refused to start: the candidate stays `queued`. */
  unexecute: { from: ['running'], to: 'queued' },
} as const satisfies Record<string, { from: readonly CandidateStatus[]; to: RunState }>

export type StatusAction = keyof typeof STATUS_RULES
