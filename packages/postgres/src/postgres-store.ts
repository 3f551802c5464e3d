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
import type { Sql } from 'postgres'
import { guard as guardCall } from './failures'
import { migrate, schemaName, type MigrateResult } from './schema'

export interface PostgresStoreOptions {
  /** The schema holding Loom's tables (see `migrate`). Default `loom`. */
  schema?: string
  /**
   * How long a call may wait for the database before it fails `unavailable` (its write may
   * still land, as when a commit's answer is lost). Default 30 000 ms; 0 waits for ever.
   */
  timeoutMs?: number
}

/** A `MigrationStore` on PostgreSQL, which can also bring its own tables up to date. */
export interface PostgresStore extends MigrationStore {
  /** Applies the schema migrations this store needs; the same as `migrate(sql, { schema })`. */
  migrate(): Promise<MigrateResult>
}

type Row = Record<string, any>

const DEFAULT_TIMEOUT_MS = 30_000
const RETRY = Symbol('retry')
const MAX_TRIES = 1000
const FOREIGN_KEY_VIOLATION = '23503'

/**
 * A `MigrationStore` on the caller's `postgres` client (a PostgreSQL server, or PGlite
 * through `pglite()`). The client stays the caller's: the store never closes it. Run
 * `migrate` (or `store.migrate()`) once before use.
 *
 * A status change reads the run with its row version, decides with core's rules
 * (`applyTransition`, `decideStep`, not restated in SQL), then writes with one conditional
 * statement — `UPDATE … WHERE version = $read` (or an insert that yields to a concurrent
 * one) — that also writes its cancelled attempt. Of concurrent changes to one run exactly
 * one write matches; the others read again and answer from what they find. Rewrites of
 * many rows (upsert, replace candidates, delete) are single calls of functions the schema
 * defines, which lock before they check. No client-side transaction is ever left open, so a
 * connection that dies mid-call leaves nothing half-applied. Listing joins statuses,
 * filters, counts and pages in one query. A database that cannot be reached, or does not
 * answer within `timeoutMs`, surfaces as an `unavailable` LoomError.
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
  if (transform?.column?.from || transform?.column?.to || transform?.row?.from || transform?.value?.from) {
    throw new LoomError('invalid', 'sql: a client with column, row or value transforms is not supported; pass one without `transform`', {
      details: { field: 'sql' },
    })
  }
  const schema = schemaName(options.schema)
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new LoomError('invalid', 'timeoutMs: must be a number of milliseconds, 0 or more', { details: { field: 'timeoutMs' } })
  }
  const guard = <R>(work: () => Promise<R>) => guardCall(work, timeoutMs)
  const T = {
    migrations: sql(`${schema}.migrations`),
    steps: sql(`${schema}.steps`),
    candidates: sql(`${schema}.candidates`),
    runs: sql(`${schema}.runs`),
    runSteps: sql(`${schema}.run_steps`),
    cancelled: sql(`${schema}.cancelled_attempts`),
  }
  const attemptSequence = `"${schema}"."attempts"`

  const fn = (name: string) => sql(`${schema}.${name}`)

  /** The migration rows with steps, counts and cancelled attempts; all of them when `id` is undefined. */
  const summaries = async (db: Sql<any>, id: string | undefined): Promise<MigrationSummary[]> => {
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

  /**
   * The candidate (whether it exists) and its run with its steps and row version, read in
   * one statement, so the steps are those of the version read.
   */
  const readForWrite = async (migrationId: string, candidateId: string) => {
    const [row] = await sql`
      select r.migration_id, r.candidate_id, r.attempt, r.state, r.current_step, r.version,
        ${ms('r.started_at')} as started_at, ${ms('r.updated_at')} as updated_at,
        case when r.candidate_id is null then null else ${runSteps()} end as steps
      from ${T.candidates} c
      left join ${T.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
      where c.migration_id = ${migrationId} and c.id = ${candidateId}
    `
    if (!row) return undefined
    return row.candidate_id === null ? { version: 0 } : { run: runOf(row), version: Number(row.version) }
  }

  /**
   * Runs `attempt` until it is not beaten to the row: each try reads the run, decides with
   * core's rules and writes only if the row version is still the one read. A try fails only
   * because another write succeeded, so the loop always ends; the bound guards against a bug.
   */
  const optimistic = async <R>(attempt: () => Promise<R | typeof RETRY>): Promise<R> => {
    for (let i = 0; i < MAX_TRIES; i++) {
      const outcome = await attempt()
      if (outcome !== RETRY) return outcome
    }
    throw new LoomError('unavailable', `postgres: gave up after ${MAX_TRIES} conflicting writes to one run`)
  }

  /**
   * A candidate list as the schema's functions take it: JSON text of one array of strings
   * per candidate. Sent as one text parameter, it needs none of the client's array types.
   */
  const candidateRows = (candidates: Candidate[]) =>
    JSON.stringify(
      candidates.map((c) => [
        c.id,
        c.kind ?? null,
        jsonOrNull(c.metadata),
        jsonOrNull(c.state),
        jsonOrNull(c.files),
        JSON.stringify(searchTerms(c)),
      ]),
    )

  const store: PostgresStore = {
    migrate: () => migrate(sql, { schema }),

    upsertMigration(definition: MigrationDefinition, candidates?: Candidate[]) {
      return guard(async () => {
        const steps = JSON.stringify(
          definition.steps.map((s) => [s.name, s.workerApp, s.description ?? null, jsonOrNull(s.config), jsonOrNull(s.files)]),
        )
        const [row] = await sql`
          select (extract(epoch from ${fn('upsert_migration')}(
            ${definition.id}::text, ${definition.name}::text, ${definition.description ?? null}::text,
            ${definition.workerUrl ?? null}::text, ${new Date().toISOString()}::timestamptz,
            ${steps}::text::json, ${candidates ? candidateRows(candidates) : null}::text::json
          )) * 1000)::float8 as created_at
        `
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
      return guard(async () => {
        const [row] = await sql`select ${fn('delete_migration')}(${id}::text) as outcome`
        return row!.outcome as 'deleted' | 'not_found' | 'running'
      })
    },

    replaceCandidates(migrationId, candidates) {
      return guard(async () => {
        const [row] = await sql`
          select ${fn('replace_candidates')}(${migrationId}::text, ${candidateRows(candidates)}::text::json) as replaced
        `
        return row!.replaced === true
      })
    },

    listCandidates(migrationId, query: CandidateQuery = {}): Promise<CandidatePage | undefined> {
      return guard(async () => {
        const q = query.q ? foldCase(query.q) : null
        const status = query.status ?? null
        /** The candidates that match, joined with their status; the filter is written once for both queries below. */
        const matching = () => sql`
          from ${T.candidates} c
          left join ${T.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
          cross join lateral (
            select case when r.state in ('queued', 'running', 'completed') then r.state else 'not_started' end as status
          ) st
          where c.migration_id = ${migrationId}
            and (${status}::text is null or st.status = ${status}::text)
            and (${q}::text is null or exists (select 1 from unnest(c.search) term where strpos(term, ${q}::text) > 0))
        `
        // The page carries the total; only an empty page (no match, an offset past the end, or
        // no such migration) needs a second statement to tell which.
        const rows = await sql`
          select count(*) over ()::int as total, c.id, c.kind, c.metadata, c.state, c.files, st.status
          ${matching()}
          order by c.position
          limit ${query.limit ?? null}::int offset ${query.offset ?? 0}::int
        `
        if (rows.length === 0) {
          const [row] = await sql`
            select (select count(*) ${matching()})::int as total
            from ${T.migrations} m where m.id = ${migrationId}
          `
          return row && { candidates: [], total: Number(row.total) }
        }
        const candidates: CandidateWithStatus[] = []
        for (const row of rows) {
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
      return guard(() =>
        optimistic(async (): Promise<TransitionResult | typeof RETRY> => {
          const found = await readForWrite(migrationId, candidateId)
          if (!found) return { ok: false, reason: 'not_found' }
          const { run, version } = found
          const previous = candidateStatusOf(run?.state)
          if (!request.from.includes(previous) || (request.attempt !== undefined && run?.attempt !== request.attempt)) {
            return run
              ? { ok: false, reason: 'conflict', status: previous, attempt: run.attempt }
              : { ok: false, reason: 'conflict', status: previous }
          }
          // A new attempt takes its number from the sequence, in the write.
          let fresh = false
          const next = applyTransition(run, request, previous, () => {
            fresh = true
            return 0
          })
          const cancelled = next.state === 'cancelled'
          const write = run
            ? sql`
                update ${T.runs} set
                  attempt = case when ${fresh}::boolean then nextval(${attemptSequence}::regclass) else attempt end,
                  state = ${next.state}::text, current_step = ${next.currentStep}::int,
                  started_at = ${next.startedAt ?? null}::timestamptz, updated_at = ${next.updatedAt}::timestamptz,
                  version = version + 1
                where migration_id = ${migrationId} and candidate_id = ${candidateId} and version = ${version}::bigint
                returning attempt`
            : // Inserting through the candidate row: its foreign-key check waits for a replace or delete holding it.
              sql`
                insert into ${T.runs} (migration_id, candidate_id, attempt, state, current_step, started_at, updated_at)
                select c.migration_id, c.id, nextval(${attemptSequence}::regclass), ${next.state}::text, ${next.currentStep}::int,
                  ${next.startedAt ?? null}::timestamptz, ${next.updatedAt}::timestamptz
                from ${T.candidates} c
                where c.migration_id = ${migrationId} and c.id = ${candidateId}
                on conflict (migration_id, candidate_id) do nothing
                returning attempt`
          let rows
          try {
            rows = await sql`
              with saved as (${write}),
              cleared as (
                delete from ${T.runSteps}
                where ${fresh}::boolean and migration_id = ${migrationId} and candidate_id = ${candidateId}
                  and exists (select 1 from saved)
              ),
              audit as (
                insert into ${T.cancelled} (migration_id, candidate_id, run_id, attempt, cancelled_at)
                select ${migrationId}, ${candidateId}, ${next.runId}, saved.attempt, ${request.at}::timestamptz
                from saved where ${cancelled}::boolean
              )
              select attempt from saved
            `
          } catch (error) {
            // The candidate was deleted between the read and the insert: read again (it will be not_found).
            if ((error as { code?: unknown }).code === FOREIGN_KEY_VIOLATION) return RETRY
            throw error
          }
          if (rows.length === 0) return RETRY
          next.attempt = Number(rows[0]!.attempt)
          return { ok: true, run: next, previous }
        }),
      )
    },

    recordStep(request): Promise<RecordStepOutcome> {
      const { migrationId, candidateId } = request
      return guard(() =>
        optimistic(async (): Promise<RecordStepOutcome | typeof RETRY> => {
          const found = await readForWrite(migrationId, candidateId)
          if (!found) return { outcome: 'not_found' }
          const { run, version } = found
          if (run?.state !== 'running' || (request.attempt !== undefined && run.attempt !== request.attempt)) {
            return { outcome: 'not_running', status: candidateStatusOf(run?.state) }
          }
          const decision = decideStep(run, request)
          if (decision.outcome !== 'recorded') return { outcome: decision.outcome, run }
          const position = decision.steps.findIndex((s) => s.result.stepName === request.result.stepName)
          const entry = decision.steps[position]!
          const rows = await sql`
            with saved as (
              update ${T.runs} set updated_at = ${request.at}::timestamptz, version = version + 1
              where migration_id = ${migrationId} and candidate_id = ${candidateId} and version = ${version}::bigint
              returning 1
            ),
            step as (
              insert into ${T.runSteps} (migration_id, candidate_id, position, step_name, success, done, result, at)
              select ${migrationId}, ${candidateId}, ${position}::int, ${entry.result.stepName}::text,
                ${entry.result.success}::boolean, ${entry.done}::boolean,
                ${JSON.stringify(entry.result)}::text::json, ${entry.at}::timestamptz
              from saved
              on conflict (migration_id, candidate_id, step_name) do update set
                success = excluded.success, done = excluded.done, result = excluded.result, at = excluded.at
            )
            select 1 from saved
          `
          if (rows.length === 0) return RETRY
          return { outcome: 'recorded', run: { ...run, steps: decision.steps, updatedAt: request.at } }
        }),
      )
    },

    setCurrentStep(migrationId, candidateId, attempt, index) {
      return guard(async () => {
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
