import {
  LoomError,
  applyTransition,
  candidateStatusOf,
  decideStep,
  emptyCounts,
  joinRunId,
  type CancelledAttempt,
  type Candidate,
  type CandidatePage,
  type CandidateQuery,
  type CandidateWithStatus,
  type MigrationDefinition,
  type MigrationRecord,
  type MigrationStore,
  type MigrationSummary,
  type RecordStepOutcome,
  type RecordedStep,
  type RunRecord,
  type RunState,
  type StepDefinition,
  type TransitionResult,
} from '@loom/core'
import type { Sql, TransactionSql } from 'postgres'
import { guard } from './failures'
import { migrate, schemaName, type MigrateResult } from './schema'

export interface PostgresStoreOptions {
  /** The schema holding Loom's tables (see `migrate`). Default `loom`. */
  schema?: string
}

/** A `MigrationStore` on PostgreSQL, which can also bring its own tables up to date. */
export interface PostgresStore extends MigrationStore {
  /** Applies the schema migrations this store needs; the same as `migrate(sql, { schema })`. */
  migrate(): Promise<MigrateResult>
}

type Db = Sql<any> | TransactionSql<any>
type Row = Record<string, any>

/** Statuses whose run pins the candidate: it is kept when a new list omits it. */
const ACTIVE: RunState[] = ['queued', 'running', 'completed']

/**
 * A `MigrationStore` on the caller's `postgres` client (a PostgreSQL server, or PGlite
 * through `pglite()`). The client stays the caller's: the store never closes it. Run
 * `migrate` (or `store.migrate()`) once before use.
 *
 * Every status change is one transaction that first locks the candidate's row, then reads
 * the run and writes it back together with its audit record, so of concurrent transitions
 * for one candidate exactly one wins and the others see its result. The transition rules
 * themselves are core's (`applyTransition`, `decideStep`), not restated in SQL. Listing
 * joins statuses, filters, counts and pages in one query. A database that cannot be
 * reached surfaces as an `unavailable` LoomError.
 *
 * @example
 * import postgres from 'postgres'
 * import { createLoom, localEngine } from '@loom/core'
 * import { postgresStore } from '@loom/postgres'
 *
 * const sql = postgres(process.env.DATABASE_URL!)
 * const store = postgresStore(sql, { schema: 'loom' })
 * await store.migrate()
 * const loom = createLoom({ store, engine: localEngine() })
 */
export function postgresStore(sql: Sql<any>, options: PostgresStoreOptions = {}): PostgresStore {
  if (typeof sql !== 'function' || typeof (sql as { begin?: unknown }).begin !== 'function') {
    throw new LoomError('invalid', 'sql: must be a client made by the postgres package (postgres(url))', {
      details: { field: 'sql' },
    })
  }
  const transform = sql.options?.transform
  if (transform?.column?.from || transform?.row?.from || transform?.value?.from) {
    throw new LoomError('invalid', 'sql: a client with column, row or value transforms is not supported; pass one without `transform`', {
      details: { field: 'sql' },
    })
  }
  const schema = schemaName(options.schema)
  const T = {
    migrations: sql(`${schema}.migrations`),
    steps: sql(`${schema}.steps`),
    candidates: sql(`${schema}.candidates`),
    runs: sql(`${schema}.runs`),
    runSteps: sql(`${schema}.run_steps`),
    cancelled: sql(`${schema}.cancelled_attempts`),
  }
  const attemptSequence = `"${schema}"."attempts"`

  const transaction = <R>(work: (tx: TransactionSql<any>) => Promise<R>): Promise<R> =>
    guard(() => sql.begin(work) as Promise<R>)

  /** The migration rows with steps, counts and cancelled attempts; all of them when `id` is undefined. */
  const summaries = async (db: Db, id: string | undefined): Promise<MigrationSummary[]> => {
    const rows = await db`
      select
        m.id, m.name, m.description, m.worker_url,
        ${ms('m.created_at')} as created_at,
        coalesce((
          select json_agg(json_build_object(
            'name', s.name, 'workerApp', s.worker_app, 'description', s.description,
            'config', s.config, 'files', s.files
          ) order by s.position)
          from ${T.steps} s where s.migration_id = m.id
        ), '[]'::json) as steps,
        coalesce((
          select json_agg(json_build_object(
            'runId', a.run_id, 'candidateId', a.candidate_id, 'cancelledAt', ${ms('a.cancelled_at')}
          ) order by a.id)
          from ${T.cancelled} a where a.migration_id = m.id
        ), '[]'::json) as cancelled,
        counts.*
      from ${T.migrations} m
      cross join lateral (
        select
          count(*)::int as total,
          (count(*) filter (where r.state = 'queued'))::int as queued,
          (count(*) filter (where r.state = 'running'))::int as running,
          (count(*) filter (where r.state = 'completed'))::int as completed
        from ${T.candidates} c
        left join ${T.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
        where c.migration_id = m.id
      ) counts
      where ${id === undefined ? sql`true` : sql`m.id = ${id}`}
      order by m.seq
    `
    return rows.map((row) => {
      const counts = emptyCounts()
      counts.queued = Number(row.queued)
      counts.running = Number(row.running)
      counts.completed = Number(row.completed)
      counts.not_started = Number(row.total) - counts.queued - counts.running - counts.completed
      const cancelledAttempts: CancelledAttempt[] = (row.cancelled as Row[]).map((a) => ({
        runId: a.runId,
        candidateId: a.candidateId,
        cancelledAt: iso(a.cancelledAt),
      }))
      return { ...migrationOf(row), counts, cancelledAttempts }
    })
  }

  /** The run with its steps; `lock` holds its row against `setCurrentStep` until the transaction ends. */
  const readRun = async (db: Db, migrationId: string, candidateId: string, lock: boolean): Promise<RunRecord | undefined> => {
    const [row] = await db`
      select r.migration_id, r.candidate_id, r.attempt, r.state, r.current_step,
        ${ms('r.started_at')} as started_at, ${ms('r.updated_at')} as updated_at,
        ${runSteps()} as steps
      from ${T.runs} r
      where r.migration_id = ${migrationId} and r.candidate_id = ${candidateId}
      ${lock ? sql`for update` : sql``}
    `
    return row && runOf(row)
  }

  /**
   * Takes the candidate's row lock, or reports that there is no such candidate. Every
   * writer of a run holds this lock, so what the transaction reads next is current and
   * stays so until it commits. (Reading the run in the same statement would not do: a
   * statement that waited for the lock still sees the run as it was before the wait.)
   */
  const lockCandidate = async (tx: TransactionSql<any>, migrationId: string, candidateId: string) => {
    const rows = await tx`
      select 1 from ${T.candidates}
      where migration_id = ${migrationId} and id = ${candidateId}
      for no key update
    `
    return rows.length > 0
  }

  /**
   * Replaces the candidate list inside `tx`, which holds the migration row's lock. Candidates
   * that may be dropped are locked first, and their runs are checked in a later statement,
   * so a transition that was in flight is seen before deciding.
   */
  const replace = async (tx: TransactionSql<any>, migrationId: string, candidates: Candidate[]) => {
    const ids = candidates.map((c) => c.id)
    const dropping = await tx`
      select id from ${T.candidates}
      where migration_id = ${migrationId} and id <> all(${ids}::text[])
      order by id
      for update
    `
    if (dropping.length > 0) {
      await tx`
        delete from ${T.candidates} c
        where c.migration_id = ${migrationId}
          and c.id = any(${dropping.map((r) => r.id as string)}::text[])
          and not exists (
            select 1 from ${T.runs} r
            where r.migration_id = c.migration_id and r.candidate_id = c.id
              and r.state = any(${ACTIVE}::text[])
          )
      `
      // Candidates kept for their run go after the new list, in their previous order.
      await tx`
        update ${T.candidates} c set position = ${candidates.length}::int + kept.rank - 1
        from (
          select id, row_number() over (order by position) as rank
          from ${T.candidates}
          where migration_id = ${migrationId} and id <> all(${ids}::text[])
        ) kept
        where c.migration_id = ${migrationId} and c.id = kept.id
      `
    }
    if (candidates.length === 0) return
    await tx`
      insert into ${T.candidates} (migration_id, id, position, kind, metadata, state, files, search)
      select ${migrationId}, v.id, (v.ord - 1)::int, v.kind, v.metadata, v.state, v.files, array(select json_array_elements_text(v.search))
      from unnest(
        ${ids}::text[],
        ${candidates.map((c) => c.kind ?? null)}::text[],
        ${candidates.map((c) => jsonOrNull(c.metadata))}::text[]::json[],
        ${candidates.map((c) => jsonOrNull(c.state))}::text[]::json[],
        ${candidates.map((c) => jsonOrNull(c.files))}::text[]::json[],
        ${candidates.map((c) => JSON.stringify(searchTerms(c)))}::text[]::json[]
      ) with ordinality as v(id, kind, metadata, state, files, search, ord)
      on conflict (migration_id, id) do update set
        position = excluded.position, kind = excluded.kind, metadata = excluded.metadata,
        state = excluded.state, files = excluded.files, search = excluded.search
    `
  }

  const store: PostgresStore = {
    migrate: () => migrate(sql, { schema }),

    upsertMigration(definition: MigrationDefinition, candidates?: Candidate[]) {
      return transaction(async (tx) => {
        const [row] = await tx`
          insert into ${T.migrations} (id, name, description, worker_url, created_at)
          values (${definition.id}, ${definition.name}, ${definition.description ?? null}::text,
                  ${definition.workerUrl ?? null}::text, ${new Date().toISOString()}::timestamptz)
          on conflict (id) do update set
            name = excluded.name, description = excluded.description, worker_url = excluded.worker_url
          returning ${ms('created_at')} as created_at
        `
        const steps = definition.steps
        await tx`delete from ${T.steps} where migration_id = ${definition.id}`
        if (steps.length > 0) {
          await tx`
            insert into ${T.steps} (migration_id, position, name, worker_app, description, config, files)
            select ${definition.id}, (v.ord - 1)::int, v.name, v.worker_app, v.description, v.config, v.files
            from unnest(
              ${steps.map((s) => s.name)}::text[],
              ${steps.map((s) => s.workerApp)}::text[],
              ${steps.map((s) => s.description ?? null)}::text[],
              ${steps.map((s) => jsonOrNull(s.config))}::text[]::json[],
              ${steps.map((s) => jsonOrNull(s.files))}::text[]::json[]
            ) with ordinality as v(name, worker_app, description, config, files, ord)
          `
        }
        if (candidates) await replace(tx, definition.id, candidates)
        const record: MigrationRecord = { ...structuredClone(definition), createdAt: iso(row!.created_at) }
        return record
      })
    },

    async getMigration(id) {
      const [summary] = await guard(() => summaries(sql, id))
      return summary
    },

    listMigrations() {
      return guard(() => summaries(sql, undefined))
    },

    deleteMigration(id) {
      return transaction(async (tx) => {
        const found = await tx`select 1 from ${T.migrations} where id = ${id} for update`
        if (found.length === 0) return 'not_found' as const
        // Hold every candidate so no transition to running can land between the check and the delete.
        await tx`select 1 from ${T.candidates} where migration_id = ${id} order by id for update`
        const [running] = await tx`
          select 1 from ${T.runs} where migration_id = ${id} and state = 'running' limit 1
        `
        if (running) return 'running' as const
        await tx`delete from ${T.migrations} where id = ${id}`
        return 'deleted' as const
      })
    },

    replaceCandidates(migrationId, candidates) {
      return transaction(async (tx) => {
        const found = await tx`select 1 from ${T.migrations} where id = ${migrationId} for no key update`
        if (found.length === 0) return false
        await replace(tx, migrationId, candidates)
        return true
      })
    },

    listCandidates(migrationId, query: CandidateQuery = {}): Promise<CandidatePage | undefined> {
      return guard(async () => {
        const q = query.q ? foldCase(query.q) : null
        const rows = await sql`
          with filtered as (
            select c.id, c.kind, c.metadata, c.state, c.files, c.position, st.status
            from ${T.candidates} c
            left join ${T.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
            cross join lateral (
              select case when r.state = any(${ACTIVE}::text[]) then r.state else 'not_started' end as status
            ) st
            where c.migration_id = ${migrationId}
              and (${query.status ?? null}::text is null or st.status = ${query.status ?? null}::text)
              and (${q}::text is null or exists (select 1 from unnest(c.search) term where strpos(term, ${q}::text) > 0))
          )
          select (select count(*) from filtered)::int as total, page.*
          from ${T.migrations} m
          left join lateral (
            select * from filtered order by position
            limit ${query.limit ?? null}::int offset ${query.offset ?? 0}::int
          ) page on true
          where m.id = ${migrationId}
        `
        if (rows.length === 0) return undefined
        const candidates: CandidateWithStatus[] = []
        for (const row of rows) {
          if (row.id === null) continue
          const candidate = candidateOf(row) as CandidateWithStatus
          candidate.status = row.status
          if (row.status !== 'not_started') candidate.runId = joinRunId(migrationId, row.id)
          candidates.push(candidate)
        }
        return { candidates, total: Number(rows[0]!.total) }
      })
    },

    getCandidate(migrationId, candidateId) {
      return guard(async () => {
        const [row] = await sql`
          select c.id, c.kind, c.metadata, c.state, c.files,
            r.migration_id, r.candidate_id, r.attempt, r.state as run_state, r.current_step,
            ${ms('r.started_at')} as started_at, ${ms('r.updated_at')} as updated_at,
            case when r.candidate_id is null then null else ${runSteps()} end as steps
          from ${T.candidates} c
          left join ${T.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
          where c.migration_id = ${migrationId} and c.id = ${candidateId}
        `
        if (!row) return undefined
        const candidate = candidateOf(row)
        if (row.candidate_id === null) return { candidate }
        return { candidate, run: runOf({ ...row, state: row.run_state }) }
      })
    },

    transition(request): Promise<TransitionResult> {
      const { migrationId, candidateId } = request
      return transaction(async (tx) => {
        if (!(await lockCandidate(tx, migrationId, candidateId))) return { ok: false, reason: 'not_found' } as const
        const run = await readRun(tx, migrationId, candidateId, true)
        const previous = candidateStatusOf(run?.state)
        if (!request.from.includes(previous) || (request.attempt !== undefined && run?.attempt !== request.attempt)) {
          return run
            ? ({ ok: false, reason: 'conflict', status: previous, attempt: run.attempt } as const)
            : ({ ok: false, reason: 'conflict', status: previous } as const)
        }
        // A new attempt takes its number from the sequence in the write below.
        let fresh = false
        const next = applyTransition(run, request, previous, () => {
          fresh = true
          return 0
        })
        const cancelled = next.state === 'cancelled'
        const [written] = await tx`
          with saved as (
            insert into ${T.runs} (migration_id, candidate_id, attempt, state, current_step, started_at, updated_at)
            values (
              ${migrationId}, ${candidateId},
              case when ${fresh}::boolean then nextval(${attemptSequence}::regclass) else ${next.attempt}::bigint end,
              ${next.state}, ${next.currentStep}::int, ${next.startedAt ?? null}::timestamptz, ${next.updatedAt}::timestamptz
            )
            on conflict (migration_id, candidate_id) do update set
              attempt = excluded.attempt, state = excluded.state, current_step = excluded.current_step,
              started_at = excluded.started_at, updated_at = excluded.updated_at
            returning attempt
          ),
          cleared as (
            delete from ${T.runSteps}
            where ${fresh}::boolean and migration_id = ${migrationId} and candidate_id = ${candidateId}
          ),
          audit as (
            insert into ${T.cancelled} (migration_id, candidate_id, run_id, attempt, cancelled_at)
            select ${migrationId}, ${candidateId}, ${next.runId}, saved.attempt, ${request.at}::timestamptz
            from saved where ${cancelled}::boolean
          )
          select attempt from saved
        `
        next.attempt = Number(written!.attempt)
        return { ok: true, run: next, previous } as const
      })
    },

    recordStep(request): Promise<RecordStepOutcome> {
      const { migrationId, candidateId } = request
      return transaction(async (tx) => {
        if (!(await lockCandidate(tx, migrationId, candidateId))) return { outcome: 'not_found' } as const
        const run = await readRun(tx, migrationId, candidateId, true)
        if (!run || run.state !== 'running' || (request.attempt !== undefined && run.attempt !== request.attempt)) {
          return { outcome: 'not_running', status: candidateStatusOf(run?.state) } as const
        }
        const decision = decideStep(run, request)
        if (decision.outcome !== 'recorded') return { outcome: decision.outcome, run }
        const position = decision.steps.findIndex((s) => s.result.stepName === request.result.stepName)
        const entry = decision.steps[position]!
        await tx`
          with saved as (
            insert into ${T.runSteps} (migration_id, candidate_id, position, step_name, success, done, result, at)
            values (
              ${migrationId}, ${candidateId}, ${position}::int, ${entry.result.stepName},
              ${entry.result.success}::boolean, ${entry.done}::boolean,
              ${JSON.stringify(entry.result)}::text::json, ${entry.at}::timestamptz
            )
            on conflict (migration_id, candidate_id, step_name) do update set
              success = excluded.success, done = excluded.done, result = excluded.result, at = excluded.at
          )
          update ${T.runs} set updated_at = ${request.at}::timestamptz
          where migration_id = ${migrationId} and candidate_id = ${candidateId}
        `
        return { outcome: 'recorded', run: { ...run, steps: decision.steps, updatedAt: request.at } }
      })
    },

    setCurrentStep(migrationId, candidateId, attempt, index) {
      return guard(async () => {
        // One conditional UPDATE: it re-checks state and attempt on the row it locks, so it cannot race a transition.
        const rows = await sql`
          update ${T.runs} set current_step = ${index}::int, updated_at = ${new Date().toISOString()}::timestamptz
          where migration_id = ${migrationId} and candidate_id = ${candidateId}
            and state = 'running' and attempt = ${attempt}::bigint
          returning 1
        `
        return rows.length > 0
      })
    },

    listRuns(state: RunState) {
      return guard(async () => {
        const rows = await sql`
          select r.migration_id, r.candidate_id, r.attempt, r.state, r.current_step,
            ${ms('r.started_at')} as started_at, ${ms('r.updated_at')} as updated_at,
            ${runSteps()} as steps
          from ${T.runs} r
          join ${T.migrations} m on m.id = r.migration_id
          where r.state = ${state}
          order by m.seq, r.migration_id, r.candidate_id
        `
        return rows.map(runOf)
      })
    },

    async ping() {
      await guard(() => sql`select 1`)
    },
  }
  return store

  /** Milliseconds since the epoch of a timestamptz column: exact, and independent of the client's type parsers. */
  function ms(column: string) {
    return sql.unsafe(`(extract(epoch from ${column}) * 1000)::float8`)
  }

  /** The step list of the run aliased `r`, as JSON, in the order the steps were first reported. */
  function runSteps() {
    return sql`coalesce((
      select json_agg(json_build_object('result', s.result, 'done', s.done, 'at', ${ms('s.at')}) order by s.position)
      from ${T.runSteps} s
      where s.migration_id = r.migration_id and s.candidate_id = r.candidate_id
    ), '[]'::json)`
  }
}

function migrationOf(row: Row): MigrationRecord {
  const record: MigrationRecord = {
    id: row.id,
    name: row.name,
    steps: (row.steps as Row[]).map(stepOf),
    createdAt: iso(row.created_at),
  }
  if (row.description !== null) record.description = row.description
  if (row.worker_url !== null) record.workerUrl = row.worker_url
  return record
}

function stepOf(row: Row): StepDefinition {
  const step: StepDefinition = { name: row.name, workerApp: row.workerApp }
  if (row.description !== null) step.description = row.description
  if (row.config !== null) step.config = row.config
  if (row.files !== null) step.files = row.files
  return step
}

function candidateOf(row: Row): Candidate {
  const candidate: Candidate = { id: row.id }
  if (row.kind !== null) candidate.kind = row.kind
  if (row.metadata !== null) candidate.metadata = row.metadata
  if (row.state !== null) candidate.state = row.state
  if (row.files !== null) candidate.files = row.files
  return candidate
}

function runOf(row: Row): RunRecord {
  const run: RunRecord = {
    runId: joinRunId(row.migration_id, row.candidate_id),
    migrationId: row.migration_id,
    candidateId: row.candidate_id,
    attempt: Number(row.attempt),
    state: row.state,
    currentStep: Number(row.current_step),
    steps: (row.steps as Row[]).map((s): RecordedStep => ({ result: s.result, done: s.done, at: iso(s.at) })),
    updatedAt: iso(row.updated_at),
  }
  if (row.started_at !== null) run.startedAt = iso(row.started_at)
  return run
}

function iso(ms: number | string): string {
  return new Date(Number(ms)).toISOString()
}

/** JSON text for a json column, or null for an absent value. */
function jsonOrNull(value: unknown): string | null {
  return value === undefined ? null : JSON.stringify(value)
}

/**
 * What `q` is matched against: the id and each metadata value, lower-cased the way
 * `matchesQuery` does it. PostgreSQL text cannot hold NUL or a lone surrogate, so NUL
 * becomes U+FFFF and a lone surrogate U+FFFD, in the terms and the needle alike.
 */
function searchTerms(candidate: Candidate): string[] {
  return [candidate.id, ...Object.values(candidate.metadata ?? {})].map(foldCase)
}

function foldCase(s: string): string {
  return s.toLowerCase().replaceAll('\u0000', '\uffff').replace(LONE_SURROGATE, '\ufffd')
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g
