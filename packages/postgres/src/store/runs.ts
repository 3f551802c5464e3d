import { LoomError } from '@loom/core'
import {
  decideStepReport,
  decideTransition,
  type MigrationStore,
  type RecordStepOutcome,
  type RunRecord,
  type RunState,
  type TransitionResult,
} from '@loom/core/store'
import type { StoreContext } from './context'
import { runOf } from './rows'

type RunMethods = Pick<MigrationStore, 'transition' | 'recordStep' | 'setCurrentStep' | 'listRuns'>

const RETRY = Symbol('retry')
const MAX_TRIES = 1000
const FOREIGN_KEY_VIOLATION = '23503'

/**
 * Runs and their steps. A status change or a step report reads the run with its row
 * version, lets core decide (`decideTransition`, `decideStepReport`), and writes the
 * decision with one statement that applies only while the version is the one read.
 */
export function runMethods(ctx: StoreContext): RunMethods {
  const { sql, tables: T, attemptSequence, call, runColumns, fromCandidate } = ctx

  /**
   * The candidate (whether it exists) and its run with its steps and row version, read in
   * one statement, so the steps are those of the version read. Version 0: no run yet.
   */
  const readForWrite = async (migrationId: string, candidateId: string): Promise<{ run?: RunRecord; version: number } | undefined> => {
    const [row] = await sql`select ${runColumns()}, r.version ${fromCandidate(migrationId, candidateId)}`
    if (!row) return undefined
    return row.candidate_id === null ? { version: 0 } : { run: runOf(row), version: Number(row.version) }
  }

  return {
    transition(request): Promise<TransitionResult> {
      const { migrationId, candidateId } = request
      return call(() =>
        optimistic<TransitionResult>(async () => {
          const found = await readForWrite(migrationId, candidateId)
          if (!found) return { ok: false, reason: 'not_found' }
          const decision = decideTransition(found.run, request)
          if (!decision.ok) return decision
          const { next, cancelledAttempt } = decision
          const fresh = decision.attempt === 'new'
          const attempt = fresh ? sql`nextval(${attemptSequence}::regclass)` : sql`${decision.attempt}::bigint`
          const write = found.run
            ? sql`
                update ${T.runs} set
                  attempt = ${attempt}, state = ${next.state}::text, current_step = ${next.currentStep}::int,
                  started_at = ${next.startedAt ?? null}::timestamptz, updated_at = ${next.updatedAt}::timestamptz,
                  version = version + 1
                where migration_id = ${migrationId} and candidate_id = ${candidateId} and version = ${found.version}::bigint
                returning attempt`
            : // Inserting through the candidate row: its foreign-key check waits for a replace or delete holding it.
              sql`
                insert into ${T.runs} (migration_id, candidate_id, attempt, state, current_step, started_at, updated_at)
                select c.migration_id, c.id, ${attempt}, ${next.state}::text, ${next.currentStep}::int,
                  ${next.startedAt ?? null}::timestamptz, ${next.updatedAt}::timestamptz
                from ${T.candidates} c
                where c.migration_id = ${migrationId} and c.id = ${candidateId}
                on conflict (migration_id, candidate_id) do nothing
                returning attempt`
          // The steps of the previous attempt and the audit record go in the same statement, only if the write matched.
          const rows = await sql`
            with saved as (${write}),
            cleared as (
              delete from ${T.runSteps}
              where ${fresh}::boolean and migration_id = ${migrationId} and candidate_id = ${candidateId}
                and exists (select 1 from saved)
            ),
            audit as (
              insert into ${T.cancelled} (migration_id, candidate_id, run_id, attempt, cancelled_at)
              select ${migrationId}, ${candidateId}, ${cancelledAttempt?.runId ?? null}::text, saved.attempt,
                ${cancelledAttempt?.cancelledAt ?? null}::timestamptz
              from saved where ${cancelledAttempt !== undefined}::boolean
            )
            select attempt from saved
          `.catch((error: unknown): typeof RETRY => {
            // The candidate was deleted between the read and the insert: read again (it will be not_found).
            if ((error as { code?: unknown }).code === FOREIGN_KEY_VIOLATION) return RETRY
            throw error
          })
          if (rows === RETRY || rows.length === 0) return RETRY
          return { ok: true, run: { ...next, attempt: Number(rows[0]!.attempt) }, previous: decision.previous }
        }),
      )
    },

    recordStep(request): Promise<RecordStepOutcome> {
      const { migrationId, candidateId } = request
      return call(() =>
        optimistic<RecordStepOutcome>(async () => {
          const found = await readForWrite(migrationId, candidateId)
          if (!found) return { outcome: 'not_found' }
          const decision = decideStepReport(found.run, request)
          if (decision.outcome === 'not_running') return decision
          if (decision.outcome !== 'recorded') return { outcome: decision.outcome, run: decision.run }
          const { run, step, position } = decision
          const rows = await sql`
            with saved as (
              update ${T.runs} set updated_at = ${run.updatedAt}::timestamptz, version = version + 1
              where migration_id = ${migrationId} and candidate_id = ${candidateId} and version = ${found.version}::bigint
              returning 1
            ),
            step as (
              insert into ${T.runSteps} (migration_id, candidate_id, position, step_name, success, done, result, at)
              select ${migrationId}, ${candidateId}, ${position}::int, ${step.result.stepName}::text,
                ${step.result.success}::boolean, ${step.done}::boolean,
                ${JSON.stringify(step.result)}::text::json, ${step.at}::timestamptz
              from saved
              on conflict (migration_id, candidate_id, step_name) do update set
                success = excluded.success, done = excluded.done, result = excluded.result, at = excluded.at
            )
            select 1 from saved
          `
          if (rows.length === 0) return RETRY
          return { outcome: 'recorded', run }
        }),
      )
    },

    setCurrentStep(migrationId, candidateId, attempt, index) {
      return call(async () => {
        // One conditional UPDATE: it re-checks state and attempt on the row it locks, so it cannot race a transition.
        const rows = await sql`
          update ${T.runs} set current_step = ${index}::int, updated_at = ${new Date().toISOString()}::timestamptz,
            version = version + 1
          where migration_id = ${migrationId} and candidate_id = ${candidateId}
            and state = 'running' and attempt = ${attempt}::bigint
          returning 1
        `
        return rows.length > 0
      })
    },

    listRuns(state: RunState) {
      return call(async () => {
        const rows = await sql`
          select ${runColumns()}
          from ${T.runs} r
          join ${T.migrations} m on m.id = r.migration_id
          where r.state = ${state}
          order by m.seq, r.migration_id, r.candidate_id
        `
        return rows.map(runOf)
      })
    },
  }
}

/**
 * Runs `attempt` until it is not beaten to the row: each try reads the run, lets core decide
 * and writes only if the row version is still the one read. A try fails only because another
 * write succeeded, so the loop always ends; the bound guards against a bug.
 */
async function optimistic<R>(attempt: () => Promise<R | typeof RETRY>): Promise<R> {
  for (let i = 0; i < MAX_TRIES; i++) {
    const outcome = await attempt()
    if (outcome !== RETRY) return outcome
  }
  throw new LoomError('unavailable', `postgres: gave up after ${MAX_TRIES} conflicting writes to one run`)
}
