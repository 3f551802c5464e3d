import { LoomError } from '@loom/core'
import {
  decideStepProgress,
  decideStepReport,
  decideTransition,
  type MigrationStore,
  type RecordedStep,
  type RecordStepOutcome,
  type RunRecord,
  type RunState,
  type TransitionResult,
} from '@loom/core/store'
import type { StoreContext } from './context'
import { type ActivityDraft, jsonOrNull, runOf, stepRows } from './rows'

type RunMethods = Pick<MigrationStore, 'transition' | 'recordStep' | 'markStep' | 'listRuns' | 'renewLease' | 'claimRuns'>

const RETRY = Symbol('retry')
const MAX_TRIES = 1000
const FOREIGN_KEY_VIOLATION = '23503'

/**
 * Runs and their steps. A status change, a step report or a step moving on reads the run
 * with its row version, lets core decide (`decideTransition`, `decideStepReport`,
 * `decideStepProgress`), and writes the decision, with the activity entry core drafted, in
 * one statement that applies only while the version is the one read: a refused or beaten
 * write logs nothing. Claims of lapsed owners' runs lock the rows they take.
 */
export function runMethods(ctx: StoreContext): RunMethods {
  const { sql, tables: T, attemptSequence, call, runColumns, fromCandidate } = ctx

  /**
   * The insert of `draft` into the activity log, once per row of the statement's CTE `saved`:
   * none when the conditional write matched no row. `attempt` overrides the draft's (a
   * transition's entry takes the attempt the write drew). The id is the column's default.
   */
  const logSaved = (draft: ActivityDraft, attempt = sql`${draft.attempt ?? null}::bigint`) => sql`
    insert into ${T.activity} (at, attempt, migration_id, candidate_id, run_id, type, actor_kind, actor_name, detail)
    select ${draft.at}::timestamptz, ${attempt}, ${draft.migrationId}::text, ${draft.candidateId ?? null}::text,
      ${draft.runId ?? null}::text, ${draft.type}::text, ${draft.actor.kind}::text, ${draft.actor.name}::text,
      ${JSON.stringify(draft.detail)}::text::json
    from saved`

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
          const { next, cancelledAttempt, activity } = decision
          const attempt = decision.attempt === 'new' ? sql`nextval(${attemptSequence}::regclass)` : sql`${decision.attempt}::bigint`
          // The steps are rewritten only when the decision changes them: a new attempt and an
          // unexecute empty them, an execute with `resume` carries the previous attempt's over.
          const rewrite = !sameSteps(found.run?.steps ?? [], next.steps)
          const steps = stepRows(next.steps)
          const v = {
            state: sql`${next.state}::text`,
            currentStep: sql`${next.currentStep}::int`,
            startedAt: sql`${next.startedAt ?? null}::timestamptz`,
            stepStartedAt: sql`${next.stepStartedAt ?? null}::timestamptz`,
            stepDispatchedAt: sql`${next.stepDispatchedAt ?? null}::timestamptz`,
            owner: sql`${next.owner ?? null}::text`,
            resumable: sql`${jsonOrNull(next.resumable)}::text::json`,
            lastAttempt: sql`${jsonOrNull(next.lastAttempt)}::text::json`,
            lastOutcome: sql`${next.lastAttempt?.outcome ?? null}::text`,
            updatedAt: sql`${next.updatedAt}::timestamptz`,
          }
          const write = found.run
            ? sql`
                update ${T.runs} set
                  attempt = ${attempt}, state = ${v.state}, current_step = ${v.currentStep}, started_at = ${v.startedAt},
                  step_started_at = ${v.stepStartedAt}, step_dispatched_at = ${v.stepDispatchedAt}, owner = ${v.owner},
                  resumable = ${v.resumable}, last_attempt = ${v.lastAttempt}, last_outcome = ${v.lastOutcome},
                  updated_at = ${v.updatedAt}, version = version + 1
                where migration_id = ${migrationId} and candidate_id = ${candidateId} and version = ${found.version}::bigint
                  and exists (select 1 from locked)
                returning attempt`
            : // Inserting through the candidate row: its foreign-key check waits for a replace or delete holding it.
              sql`
                insert into ${T.runs} (migration_id, candidate_id, attempt, state, current_step, started_at,
                  step_started_at, step_dispatched_at, owner, resumable, last_attempt, last_outcome, updated_at)
                select c.migration_id, c.id, ${attempt}, ${v.state}, ${v.currentStep}, ${v.startedAt},
                  ${v.stepStartedAt}, ${v.stepDispatchedAt}, ${v.owner}, ${v.resumable}, ${v.lastAttempt}, ${v.lastOutcome},
                  ${v.updatedAt}
                from ${T.candidates} c
                where c.migration_id = ${migrationId} and c.id = ${candidateId} and exists (select 1 from locked)
                on conflict (migration_id, candidate_id) do nothing
                returning attempt`
          // The steps, the audit record and the activity entry go in the same statement, only if the
          // write matched. The delete and the upsert touch disjoint rows (names absent from, and
          // present in, the new steps).
          // The migration's row is locked first, before the run: the triggers that keep the
          // candidate's standing and the migration's counts lock it last, and a rewrite of the
          // list locks it first (schema version 6), so no two writers wait for each other in
          // opposite orders. Transitions of one migration so commit one at a time.
          const rows = await sql`
            with locked as (select 1 from ${T.migrations} where id = ${migrationId} for no key update),
            saved as (${write}),
            new_steps as (
              select e.r, e.ord from json_array_elements(${steps}::text::json) with ordinality as e(r, ord)
              where ${rewrite}::boolean
            ),
            dropped as (
              delete from ${T.runSteps} s
              where ${rewrite}::boolean and s.migration_id = ${migrationId} and s.candidate_id = ${candidateId}
                and exists (select 1 from saved)
                and not exists (select 1 from new_steps n where n.r->>0 = s.step_name)
            ),
            written as (
              insert into ${T.runSteps} (migration_id, candidate_id, position, step_name, success, done, result, at, carried_from,
                by_kind, by_name)
              select ${migrationId}, ${candidateId}, (n.ord - 1)::integer, n.r->>0, (n.r->>1)::boolean, (n.r->>2)::boolean,
                (n.r->>3)::json, (n.r->>4)::timestamptz, (n.r->>5)::bigint, n.r->>6, n.r->>7
              from new_steps n
              where exists (select 1 from saved)
              on conflict (migration_id, candidate_id, step_name) do update set
                position = excluded.position, success = excluded.success, done = excluded.done, result = excluded.result,
                at = excluded.at, carried_from = excluded.carried_from, by_kind = excluded.by_kind, by_name = excluded.by_name
            ),
            audit as (
              insert into ${T.cancelled} (migration_id, candidate_id, run_id, attempt, cancelled_at,
                cancelled_by_kind, cancelled_by_name, reason)
              select ${migrationId}, ${candidateId}, ${cancelledAttempt?.runId ?? null}::text, saved.attempt,
                ${cancelledAttempt?.cancelledAt ?? null}::timestamptz, ${cancelledAttempt?.cancelledBy?.kind ?? null}::text,
                ${cancelledAttempt?.cancelledBy?.name ?? null}::text, ${cancelledAttempt?.reason ?? null}::text
              from saved where ${cancelledAttempt !== undefined}::boolean
            ),
            logged as (${logSaved(activity, sql`saved.attempt`)})
            select attempt from saved
          `.catch((error: unknown): typeof RETRY => {
            // The candidate was deleted between the read and the insert: read again (it will be not_found).
            if ((error as { code?: unknown }).code === FOREIGN_KEY_VIOLATION) return RETRY
            throw error
          })
          if (rows === RETRY || rows.length === 0) return RETRY
          ctx.hub.wrote()
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
          const { run, step, position, activity } = decision
          const rows = await sql`
            with saved as (
              update ${T.runs} set updated_at = ${run.updatedAt}::timestamptz, version = version + 1
              where migration_id = ${migrationId} and candidate_id = ${candidateId} and version = ${found.version}::bigint
              returning 1
            ),
            step as (
              insert into ${T.runSteps} (migration_id, candidate_id, position, step_name, success, done, result, at, by_kind, by_name)
              select ${migrationId}, ${candidateId}, ${position}::int, ${step.result.stepName}::text,
                ${step.result.success}::boolean, ${step.done}::boolean,
                ${JSON.stringify(step.result)}::text::json, ${step.at}::timestamptz, ${step.by?.kind ?? null}::text,
                ${step.by?.name ?? null}::text
              from saved
              on conflict (migration_id, candidate_id, step_name) do update set
                success = excluded.success, done = excluded.done, result = excluded.result, at = excluded.at,
                carried_from = null, by_kind = excluded.by_kind, by_name = excluded.by_name
            ),
            logged as (${logSaved(activity)})
            select 1 from saved
          `
          if (rows.length === 0) return RETRY
          ctx.hub.wrote()
          return { outcome: 'recorded', run }
        }),
      )
    },

    markStep(request) {
      const { migrationId, candidateId } = request
      return call(() =>
        optimistic<boolean>(async () => {
          const found = await readForWrite(migrationId, candidateId)
          const decision = found && decideStepProgress(found.run, request)
          if (!decision) return false
          const { run: next, activity } = decision
          // A dispatch's first acceptance has its entry, written with the run or not at all.
          const rows = await sql`
            with saved as (
              update ${T.runs} set
                current_step = ${next.currentStep}::int, step_started_at = ${next.stepStartedAt ?? null}::timestamptz,
                step_dispatched_at = ${next.stepDispatchedAt ?? null}::timestamptz, updated_at = ${next.updatedAt}::timestamptz,
                version = version + 1
              where migration_id = ${migrationId} and candidate_id = ${candidateId} and version = ${found.version}::bigint
              returning 1
            )${activity ? sql`, logged as (${logSaved(activity)})` : sql``}
            select 1 from saved
          `
          if (rows.length === 0) return RETRY
          if (activity) ctx.hub.wrote()
          return true
        }),
      )
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

    renewLease(owner, until) {
      return call(async () => {
        await sql`
          insert into ${T.leases} (owner, until) values (${owner}::text, ${until}::timestamptz)
          on conflict (owner) do update set until = excluded.until
        `
      })
    },

    claimRuns({ owner, at, limit }) {
      return call(async () => {
        // `seen` is what this statement's snapshot shows claimable; `taken` locks those rows, skipping
        // any another claimer holds. A row that another claim (or any write) changed since the
        // snapshot has a new version: the lock's recheck of `version = seen.version` drops it, where
        // a recheck of the lease condition alone would still read the lease as of the snapshot.
        // Materialized, so the recheck compares with the version seen, not the row's own.
        const rows = await sql`
          with seen as materialized (
            select r.migration_id, r.candidate_id, r.version
            from ${T.runs} r
            where r.state = 'running'
              and (r.owner is null or not exists (
                select 1 from ${T.leases} l where l.owner = r.owner and l.until >= ${at}::timestamptz
              ))
          ),
          taken as (
            select r.migration_id, r.candidate_id
            from ${T.runs} r
            join seen s on s.migration_id = r.migration_id and s.candidate_id = r.candidate_id and s.version = r.version
            order by r.migration_id, r.candidate_id
            limit ${limit}::int
            for update of r skip locked
          ),
          claimed as (
            update ${T.runs} r set owner = ${owner}::text, version = r.version + 1
            from taken t
            where r.migration_id = t.migration_id and r.candidate_id = t.candidate_id
            returning r.*
          )
          select ${runColumns()}
          from claimed r
          order by r.migration_id, r.candidate_id
        `
        return rows.map(runOf)
      })
    },
  }
}

/** Whether two step lists are the same, entry for entry (both come from JSON, so their text compares). */
function sameSteps(a: RecordedStep[], b: RecordedStep[]): boolean {
  return a.length === b.length && JSON.stringify(a) === JSON.stringify(b)
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
