/**
 * The status rules of the HTTP contract, decided in one place. A store reads a run (with
 * whatever version it needs to make its write conditional), asks these pure functions what
 * the request does to it, and writes the answer in one conditional operation. No store
 * restates a rule: which transitions are allowed, what a transition resets, when a
 * transition starts a new attempt, what it audits, and whether a step report is new, a
 * repeat or late are all answered here.
 */
import { joinRunId } from './ids'
import { SYSTEM_ACTOR } from './actors'
import type { ActivityDraft, RecordedStep, RecordStepRequest, RunRecord, RunState, StepProgressRequest, TransitionRequest } from './ports'
import type { CancelledAttempt, CandidateStatus, LastAttempt, LastOutcome, StatusCounts } from './schemas'

/** The candidate status a run state shows as: a run that failed, was cancelled or dequeued is `not_started`. */
export function candidateStatusOf(state: RunState | undefined): CandidateStatus {
  return state === 'queued' || state === 'running' || state === 'completed' ? state : 'not_started'
}

/**
 * Where a candidate with this run stands in the counts: its status, and, while `not_started`
 * after an attempt, how that attempt ended (what `lastOutcome` filters and `counts.failed` counts).
 */
export function standingOf(run: Pick<RunRecord, 'state' | 'lastAttempt'> | undefined): { status: CandidateStatus; outcome?: LastOutcome } {
  const status = candidateStatusOf(run?.state)
  const outcome = status === 'not_started' ? run?.lastAttempt?.outcome : undefined
  return outcome === undefined ? { status } : { status, outcome }
}

/**
 * The status rules of the HTTP contract: for each action, the candidate statuses it is
 * allowed from and the run state it moves to.
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

/** An action of the status rules. */
export type StatusAction = keyof typeof STATUS_RULES

/** The run a transition leaves behind, without its attempt number when it starts a new attempt. */
export type NextRun = Omit<RunRecord, 'attempt'>

/** What a transition does to a run, or why it may not. */
export type TransitionDecision =
  | {
      ok: true
      /** The candidate's status before the change. */
      previous: CandidateStatus
      /** The run to store. Its steps are empty when `attempt` is `'new'`. */
      next: NextRun
      /**
       * The attempt of the stored run: the current one, or `'new'` when the transition
       * starts a new attempt, whose number the store draws (greater than every attempt
       * it has handed out).
       */
      attempt: number | 'new'
      /** The audit record to store in the same write, when the transition implies one (a cancel). */
      cancelledAttempt?: CancelledAttempt
      /** The activity entry to write in the same write (its `attempt` is the drawn one when `attempt` is `'new'`). */
      activity: ActivityDraft
    }
  | {
      ok: false
      reason: 'conflict'
      /** The candidate's current status, which the action is not allowed from. */
      status: CandidateStatus
      /** The run's current attempt, when it has a run. */
      attempt?: number
    }

/**
 * Decides a transition of the candidate whose run is `run` (undefined when it never had
 * one). Pure: it reads its arguments and returns data, so every store applies exactly the
 * same rules.
 *
 * @example
 * const decision = decideTransition(found?.run, request)
 * if (!decision.ok) return decision
 * // write decision.next (with the drawn attempt when decision.attempt === 'new') if the run's version is still the one read
 */
export function decideTransition(run: RunRecord | undefined, request: TransitionRequest): TransitionDecision {
  const rule = STATUS_RULES[request.action]
  const previous = candidateStatusOf(run?.state)
  const allowed = (rule.from as readonly CandidateStatus[]).includes(previous)
  if (!allowed || (request.attempt !== undefined && run?.attempt !== request.attempt)) {
    return run
      ? { ok: false, reason: 'conflict', status: previous, attempt: run.attempt }
      : { ok: false, reason: 'conflict', status: previous }
  }
  const { migrationId, candidateId, at } = request
  if (request.action === 'queue') {
    // From not_started: a new attempt, with nothing of the previous one but what a resume may carry over.
    const next: NextRun = {
      runId: joinRunId(migrationId, candidateId),
      migrationId,
      candidateId,
      state: rule.to,
      currentStep: 0,
      steps: [],
      updatedAt: at,
    }
    const resumable = run && resumableOf(run)
    if (resumable?.length) next.resumable = resumable
    return { ok: true, previous, attempt: 'new', next, activity: transitionActivity(request, next.runId, undefined, previous) }
  }
  if (!run)
    throw new Error(`${request.action} of ${joinRunId(migrationId, candidateId)} allowed without a run: the status rules are broken`)
  const { attempt, stepStartedAt: _began, stepDispatchedAt: _dispatched, owner: _owner, ...kept } = run
  const next: NextRun = { ...kept, state: rule.to, updatedAt: at }
  if (request.action === 'execute') {
    next.startedAt = at
    if (request.owner !== undefined) next.owner = request.owner
    // The engine starts at step 1 and goes past each step it finds succeeded: carried steps are
    // matched by name, so a migration re-announced with steps added or removed resumes right.
    next.steps = structuredClone(request.resume ? (run.resumable ?? []) : [])
    next.currentStep = 0
  }
  if (request.action === 'unexecute') {
    delete next.startedAt
    next.steps = []
    next.currentStep = 0
  }
  if (rule.to === 'failed' || rule.to === 'cancelled' || rule.to === 'dequeued') next.lastAttempt = lastAttemptOf(run, request, rule.to)
  const decision: TransitionDecision = {
    ok: true,
    previous,
    attempt,
    next,
    activity: transitionActivity(request, run.runId, attempt, previous),
  }
  if (rule.to === 'cancelled') {
    decision.cancelledAttempt = {
      runId: run.runId,
      candidateId,
      cancelledAt: at,
      attempt,
      cancelledBy: request.by ?? SYSTEM_ACTOR,
      ...(request.reason === undefined ? {} : { reason: request.reason }),
    }
  }
  return decision
}

/**
 * How an attempt that did not complete ended. A failure names the step that failed, its error,
 * and who reported it; a failure an operator reported on a review (`metadata.review: 'rejected'`,
 * which `Loom.complete` sets on every decided manual review) is a rejection, its note the reason.
 */
function lastAttemptOf(run: RunRecord, request: TransitionRequest, to: 'failed' | 'cancelled' | 'dequeued'): LastAttempt {
  const by = request.by ?? SYSTEM_ACTOR
  if (to !== 'failed') {
    const outcome = to === 'cancelled' ? 'cancelled' : 'dequeued'
    return { attempt: run.attempt, outcome, at: request.at, by, ...(request.reason === undefined ? {} : { reason: request.reason }) }
  }
  const failed = [...run.steps].reverse().find((s) => s.done && !s.result.success)
  if (!failed) return { attempt: run.attempt, outcome: 'failed', at: request.at, by }
  const { metadata } = failed.result
  // Workers may not decide reviews: a worker's own `review` value is not a rejection.
  const rejected = metadata?.review === 'rejected' && failed.by !== undefined && failed.by.kind !== 'worker'
  const last: LastAttempt = {
    attempt: run.attempt,
    outcome: rejected ? 'rejected' : 'failed',
    at: request.at,
    by: failed.by ?? by,
    step: failed.result.stepName,
  }
  if (metadata?.error !== undefined) last.error = metadata.error
  if (rejected && metadata?.note !== undefined) last.reason = metadata.note
  return last
}

/**
 * The activity entry of a transition. A cancel says the status it was made from (queued or
 * running); every other action is allowed from one status only, which its type tells.
 */
function transitionActivity(
  request: TransitionRequest,
  runId: string,
  attempt: number | undefined,
  previous: CandidateStatus,
): ActivityDraft {
  const detail: Record<string, unknown> = {}
  if (request.action === 'cancel') detail.previous = previous
  if (request.reason !== undefined) detail.reason = request.reason
  if (request.action === 'execute' && request.resume) detail.resume = true
  return {
    at: request.at,
    actor: request.by ?? SYSTEM_ACTOR,
    type: `run.${request.action}`,
    migrationId: request.migrationId,
    runId,
    candidateId: request.candidateId,
    ...(attempt === undefined ? {} : { attempt }),
    detail,
  }
}

/**
 * The steps a resume of `run`'s next attempt carries over: of a run that failed or was
 * cancelled while running, its steps that succeeded, in order, up to the first that did not;
 * of a run that never ran (dequeued, or cancelled while queued), what it would itself have
 * carried over.
 */
function resumableOf(run: RunRecord): RecordedStep[] | undefined {
  if (run.startedAt === undefined) return run.resumable
  if (run.state !== 'failed' && run.state !== 'cancelled') return undefined
  const carried: RecordedStep[] = []
  for (const step of run.steps) {
    if (!step.done || !step.result.success) break
    carried.push({ ...structuredClone(step), carriedFrom: step.carriedFrom ?? run.attempt })
  }
  return carried
}

/** What a step report does to a run, or why it changes nothing. */
export type StepReportDecision =
  /**
   * New: store `run` (its steps and `updatedAt` changed); `step` is the entry at `position` of
   * its steps; `activity` is the log entry to write with it.
   */
  | { outcome: 'recorded'; run: RunRecord; step: RecordedStep; position: number; activity: ActivityDraft }
  /** The same final outcome is already stored: nothing to write. */
  | { outcome: 'duplicate'; run: RunRecord }
  /** The step already ended with another outcome, or a progress update came after its end: refused. */
  | { outcome: 'step_ended'; run: RunRecord }
  /**
   * The run is not running, or not at the request's attempt: refused. `status` is the
   * candidate's; `attempt` the run's current attempt, when the candidate has a run.
   */
  | { outcome: 'not_running'; status: CandidateStatus; attempt?: number }

/**
 * Decides a step report for the candidate whose run is `run`. Pure, like {@link decideTransition}.
 *
 * @example
 * const decision = decideStepReport(found.run, request)
 * if (decision.outcome === 'recorded') // write decision.step at decision.position if the run's version is still the one read
 */
export function decideStepReport(run: RunRecord | undefined, request: RecordStepRequest): StepReportDecision {
  if (run?.state !== 'running' || (request.attempt !== undefined && run.attempt !== request.attempt)) {
    const status = candidateStatusOf(run?.state)
    return run ? { outcome: 'not_running', status, attempt: run.attempt } : { outcome: 'not_running', status }
  }
  const name = request.result.stepName
  const found = run.steps.findIndex((s) => s.result.stepName === name)
  const existing = found < 0 ? undefined : run.steps[found]
  if (existing?.done) {
    const same = request.done && existing.result.success === request.result.success
    return { outcome: same ? 'duplicate' : 'step_ended', run }
  }
  const step: RecordedStep = { result: structuredClone(request.result), done: request.done, at: request.at }
  if (request.by) step.by = { ...request.by }
  const steps = [...run.steps]
  const position = found < 0 ? steps.length : found
  steps[position] = step
  const { metadata } = request.result
  const detail: Record<string, unknown> = { stepName: name, success: request.result.success, done: request.done }
  for (const key of ['phase', 'error', 'prUrl', 'note', 'review'] as const) if (metadata?.[key] !== undefined) detail[key] = metadata[key]
  const activity: ActivityDraft = {
    at: request.at,
    actor: request.by ?? SYSTEM_ACTOR,
    type: 'step.reported',
    migrationId: run.migrationId,
    runId: run.runId,
    candidateId: run.candidateId,
    attempt: run.attempt,
    detail,
  }
  return { outcome: 'recorded', run: { ...run, steps, updatedAt: request.at }, step, position, activity }
}

/**
 * What a step moving on does to a running run, or undefined when it changes nothing because
 * the run is not running at the request's attempt (or, for `dispatched`, not at its step).
 * `begun` on the step already in flight keeps its `stepStartedAt`, so a run resumed after a
 * restart keeps its step's deadline; `dispatched` is recorded once, with its activity entry.
 */
export function decideStepProgress(
  run: RunRecord | undefined,
  request: StepProgressRequest,
): { run: RunRecord; activity?: ActivityDraft } | undefined {
  if (run?.state !== 'running' || run.attempt !== request.attempt) return undefined
  const next: RunRecord = { ...run, updatedAt: request.at }
  if (request.phase === 'dispatched') {
    if (run.currentStep !== request.index) return undefined
    next.stepDispatchedAt = run.stepDispatchedAt ?? request.at
    // The first acceptance is the dispatch the log records; a repeat changes nothing it shows.
    if (run.stepDispatchedAt !== undefined) return { run: next }
    const activity: ActivityDraft = {
      at: request.at,
      actor: SYSTEM_ACTOR,
      type: 'step.dispatched',
      migrationId: run.migrationId,
      runId: run.runId,
      candidateId: run.candidateId,
      attempt: run.attempt,
      detail: { step: request.index },
    }
    return { run: next, activity }
  }
  if (run.currentStep === request.index && run.stepStartedAt) return { run: next }
  next.currentStep = request.index
  next.stepStartedAt = request.at
  delete next.stepDispatchedAt
  return { run: next }
}

/** Zeroed counts, one per candidate status. */
export function emptyCounts(): StatusCounts {
  return { not_started: 0, queued: 0, running: 0, completed: 0, failed: 0 }
}
