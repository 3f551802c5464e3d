import type { Actor } from '../actors'
import type { ActivityEntry } from '../ports'
import { ActivityQuerySchema, type AttemptHistory, MAX_ACTIVITY_PAGE, type RunHistory, SlugSchema } from '../schemas'
import { parse } from '../validate'
import type { LoomContext } from './context'
import type { Loom } from './index'

type ActivityMethods = Pick<Loom, 'activity' | 'history'>

/** The default page of `activity`. */
const DEFAULT_ACTIVITY_PAGE = 100

/** What happened: a migration's activity log, page by page, and a run's history, attempt by attempt. */
export function activityMethods(ctx: LoomContext): ActivityMethods {
  const { store, requireMigration, runOf, notFound } = ctx

  return {
    async activity(migrationId, input = {}) {
      parse(SlugSchema, migrationId, 'migrationId')
      const query = parse(ActivityQuerySchema, input, 'query')
      const limit = query.limit ?? DEFAULT_ACTIVITY_PAGE
      const newest = query.order === 'newest'
      const entries = await store.listActivity({
        migrationId,
        limit,
        ...(query.after === undefined ? {} : { after: query.after }),
        ...(newest ? { newest } : {}),
      })
      // The log outlives a deleted migration; a migration that never was has none.
      if (entries.length === 0 && query.after === undefined) await requireMigration(migrationId)
      const last = entries[entries.length - 1]
      return entries.length === limit && last && !newest ? { entries, next: last.id } : { entries }
    },

    async history(runId) {
      const { migrationId, candidateId } = runOf(runId)
      const migration = await requireMigration(migrationId)
      if (!(await store.getCandidate(migrationId, candidateId))) return notFound(migrationId, candidateId)
      const entries: ActivityEntry[] = []
      // A candidate's log grows with its attempts only; read it a full page at a time.
      for (let after: string | undefined; ; ) {
        const page = await store.listActivity({ migrationId, candidateId, limit: MAX_ACTIVITY_PAGE, ...(after ? { after } : {}) })
        entries.push(...page)
        if (page.length < MAX_ACTIVITY_PAGE) break
        after = page[page.length - 1]!.id
      }
      const stepNames = migration.steps.map((step) => step.name)
      return { runId, migrationId, candidateId, attempts: attemptsOf(entries, stepNames) }
    },
  }
}

/** A failed review step decided by an operator (or Loom itself), as `decideTransition`'s last attempt tells it. */
function isRejection(step: AttemptHistory['steps'][number]): boolean {
  return step.detail.review === 'rejected' && step.reportedBy !== undefined && step.reportedBy.kind !== 'worker'
}

/**
 * Folds a candidate's log, oldest first, into its attempts: who queued, executed and ended each,
 * when, how long it took, and each step with its dispatch and report. A step's dispatch names it
 * by position, read against the migration's current steps.
 */
function attemptsOf(entries: readonly ActivityEntry[], stepNames: readonly string[]): RunHistory['attempts'] {
  const attempts = new Map<number, AttemptHistory>()
  const attemptOf = (entry: ActivityEntry): AttemptHistory => {
    const number = entry.attempt ?? 0
    let attempt = attempts.get(number)
    if (!attempt) {
      // An attempt whose queue is not in the log (written before the log existed) starts at its first entry.
      attempt = { attempt: number, outcome: 'queued', queuedAt: entry.at, queuedBy: entry.actor, steps: [] }
      attempts.set(number, attempt)
    }
    return attempt
  }
  const end = (attempt: AttemptHistory, entry: ActivityEntry, outcome: AttemptHistory['outcome']) => {
    attempt.outcome = outcome
    attempt.endedAt = entry.at
    attempt.endedBy = entry.actor
    if (attempt.startedAt) attempt.durationMs = Date.parse(entry.at) - Date.parse(attempt.startedAt)
    if (typeof entry.detail.reason === 'string') attempt.reason = entry.detail.reason
  }
  const stepOf = (attempt: AttemptHistory, stepName: string) => {
    let step = attempt.steps.find((s) => s.stepName === stepName)
    if (!step) {
      step = { stepName, done: false, detail: {} }
      attempt.steps.push(step)
    }
    return step
  }

  for (const entry of entries) {
    if (entry.attempt === undefined) continue
    const attempt = attemptOf(entry)
    switch (entry.type) {
      case 'run.queue':
        attempt.queuedAt = entry.at
        attempt.queuedBy = entry.actor
        break
      case 'run.execute':
        attempt.outcome = 'running'
        attempt.startedAt = entry.at
        attempt.startedBy = entry.actor
        attempt.steps = []
        break
      case 'run.unexecute':
        attempt.outcome = 'queued'
        delete attempt.startedAt
        delete attempt.startedBy
        break
      case 'run.dequeue':
        end(attempt, entry, 'dequeued')
        break
      case 'run.cancel':
        end(attempt, entry, 'cancelled')
        break
      case 'run.complete':
        end(attempt, entry, 'completed')
        break
      case 'run.fail': {
        // Loom ends a failed run; what failed it is the step reported as failed, and who reported it.
        const failed = [...attempt.steps].reverse().find((step) => step.done && !step.success)
        end(attempt, entry, failed && isRejection(failed) ? 'rejected' : 'failed')
        if (failed?.reportedBy) attempt.endedBy = failed.reportedBy
        if (failed && isRejection(failed) && typeof failed.detail.note === 'string') attempt.reason = failed.detail.note
        break
      }
      case 'step.dispatched': {
        const index = Number(entry.detail.step)
        const step = stepOf(attempt, stepNames[index] ?? `step ${index + 1}`)
        step.dispatchedAt = entry.at
        break
      }
      case 'step.reported': {
        const step = stepOf(attempt, String(entry.detail.stepName))
        const { stepName: _name, success, done, ...detail } = entry.detail
        step.reportedAt = entry.at
        step.reportedBy = entry.actor as Actor
        step.success = success === true
        step.done = done === true
        step.detail = detail
        if (step.done && step.dispatchedAt) step.durationMs = Date.parse(entry.at) - Date.parse(step.dispatchedAt)
        break
      }
    }
  }
  return [...attempts.values()].sort((a, b) => a.attempt - b.attempt)
}
