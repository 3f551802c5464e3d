import type { CancelledAttempt, Candidate } from '@loom/core'
import type { MigrationDefinition, MigrationRecord, MigrationStore, MigrationSummary } from '@loom/core/store'
import type { StoreContext } from './context'
import { type ActivityDraft, candidateRows, countsOf, draftOrNull, iso, jsonOrNull, migrationOf, type Row } from './rows'

type MigrationMethods = Pick<
  MigrationStore,
  'upsertMigration' | 'getMigration' | 'getMigrationRecord' | 'listMigrations' | 'deleteMigration' | 'versions'
>

/** Migrations with their steps, counts and cancelled attempts; the rewrites are single calls of the schema's functions. */
export function migrationMethods(ctx: StoreContext): MigrationMethods {
  const { sql, tables: T, ms, fn, call } = ctx

  /** The steps of the migration aliased `m`, as JSON, in order. */
  const steps = () => sql`coalesce((
    select json_agg(json_build_object(
      'name', s.name, 'workerApp', s.worker_app, 'description', s.description,
      'config', s.config, 'files', s.files
    ) order by s.position)
    from ${T.steps} s where s.migration_id = m.id
  ), '[]'::json)`

  /** The migration rows with steps, their kept counts and cancelled attempts; all of them when `id` is undefined. */
  const summaries = async (id: string | undefined): Promise<MigrationSummary[]> => {
    const rows = await sql`
      select
        m.id, m.name, m.description, m.worker_url, m.owner,
        ${ms('m.created_at')} as created_at,
        ${steps()} as steps,
        coalesce((
          select json_agg(json_build_object(
            'runId', a.run_id, 'candidateId', a.candidate_id, 'cancelledAt', ${ms('a.cancelled_at')},
            'attempt', a.attempt, 'byKind', a.cancelled_by_kind, 'byName', a.cancelled_by_name, 'reason', a.reason
          ) order by a.id)
          from ${T.cancelled} a where a.migration_id = m.id
        ), '[]'::json) as cancelled,
        m.version, m.n_candidates, m.n_queued, m.n_running, m.n_completed, m.n_failed
      from ${T.migrations} m
      where ${id === undefined ? sql`true` : sql`m.id = ${id}`}
      order by m.seq
    `
    return rows.map((row) => {
      const counts = countsOf(row)
      const cancelledAttempts = (row.cancelled as Row[]).map((a) => {
        // Every row has its attempt (version 1 stored it already); one written before version 4 has no actor.
        const cancelled: CancelledAttempt = {
          runId: a.runId,
          candidateId: a.candidateId,
          cancelledAt: iso(a.cancelledAt),
          attempt: Number(a.attempt),
        }
        if (a.byKind !== null) cancelled.cancelledBy = { kind: a.byKind, name: a.byName }
        if (a.reason !== null) cancelled.reason = a.reason
        return cancelled
      })
      return { ...migrationOf(row), counts, cancelledAttempts, version: String(row.version) }
    })
  }

  return {
    upsertMigration(definition: MigrationDefinition, candidates?: Candidate[], claimant?: string, activity?: ActivityDraft) {
      return ctx.callRewriting(candidates?.length ?? 0, async () => {
        const steps = JSON.stringify(
          definition.steps.map((s) => [s.name, s.workerApp, s.description ?? null, jsonOrNull(s.config), jsonOrNull(s.files)]),
        )
        // One call: the claim, the definition, its steps, the candidates and the activity entry are
        // written together or not at all.
        const [row] = await sql`
          select u.o_applied as applied, ${ms('u.o_created')} as created_at, u.o_owner as owner,
            u.o_name as name, u.o_description as description, u.o_worker_url as worker_url, u.o_steps as steps
          from ${fn('upsert_migration')}(
            ${definition.id}::text, ${definition.name}::text, ${definition.description ?? null}::text,
            ${definition.workerUrl ?? null}::text, ${new Date().toISOString()}::timestamptz,
            ${steps}::text::json, ${candidates ? candidateRows(candidates) : null}::text::json, ${claimant ?? null}::text,
            ${draftOrNull(activity)}::text::json
          ) u
        `
        // Another worker's migration: nothing was written, and the record is the stored one, naming its owner.
        if (row!.applied !== true) return migrationOf({ ...row, id: definition.id })
        if (activity) ctx.hub.wrote()
        const record: MigrationRecord = { ...structuredClone(definition), createdAt: iso(row!.created_at) }
        if (row!.owner !== null) record.owner = row!.owner
        return record
      })
    },

    async getMigration(id) {
      const [summary] = await call(() => summaries(id))
      return summary
    },

    getMigrationRecord(id) {
      return call(async () => {
        const [row] = await sql`
          select m.id, m.name, m.description, m.worker_url, m.owner, ${ms('m.created_at')} as created_at, ${steps()} as steps
          from ${T.migrations} m where m.id = ${id}
        `
        return row && migrationOf(row)
      })
    },

    listMigrations() {
      return call(() => summaries(undefined))
    },

    versions(ids) {
      return call(async () => {
        const rows = await sql`
          select id, version from ${T.migrations}
          where ${ids === undefined ? sql`true` : sql`id in (select json_array_elements_text(${JSON.stringify(ids)}::text::json))`}
          order by seq
        `
        return new Map(rows.map((row) => [row.id as string, String(row.version)]))
      })
    },

    deleteMigration(id, activity) {
      return call(async () => {
        const [row] = await sql`select ${fn('delete_migration')}(${id}::text, ${draftOrNull(activity)}::text::json) as outcome`
        if (row!.outcome === 'deleted' && activity) ctx.hub.wrote()
        return row!.outcome as 'deleted' | 'not_found' | 'running'
      })
    },
  }
}
