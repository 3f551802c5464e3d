import type { Sql } from 'postgres'
import { guard } from '../failures'
import { activityHub } from './watch'

/**
 * The time a rewrite is allowed per candidate, beyond the store's bound: a few times what a
 * submission costs on a loaded two-core machine (about 80 µs a row with every index).
 */
const REWRITE_MS_PER_ROW = 0.25

/** What every part of the store works with: the caller's client, Loom's tables in its schema, and the call wrapper. */
export type StoreContext = ReturnType<typeof storeContext>

export function storeContext(sql: Sql<any>, schema: string, timeoutMs: number) {
  /** Milliseconds since the epoch of a timestamptz column: exact, and independent of the client's type parsers. */
  const ms = (column: string) => sql.unsafe(`(extract(epoch from ${column}) * 1000)::float8`)
  const tables = {
    migrations: sql(`${schema}.migrations`),
    steps: sql(`${schema}.steps`),
    candidates: sql(`${schema}.candidates`),
    runs: sql(`${schema}.runs`),
    runSteps: sql(`${schema}.run_steps`),
    cancelled: sql(`${schema}.cancelled_attempts`),
    leases: sql(`${schema}.leases`),
    activity: sql(`${schema}.activity`),
  }
  /** The step list of the run aliased `r`, as JSON, in the order the steps were first reported. */
  const runSteps = () => sql`coalesce((
    select json_agg(json_build_object(
      'result', s.result, 'done', s.done, 'at', ${ms('s.at')}, 'carriedFrom', s.carried_from,
      'byKind', s.by_kind, 'byName', s.by_name
    ) order by s.position)
    from ${tables.runSteps} s
    where s.migration_id = r.migration_id and s.candidate_id = r.candidate_id
  ), '[]'::json)`
  const hub = activityHub(sql, schema)
  return {
    sql,
    tables,
    /** Who waits for the log's entries, and how they are woken (`watch`, `wrote` after a write). */
    hub,
    /** The bound on every call (0: none). */
    timeoutMs,
    /** The sequence every attempt number is drawn from, as `nextval` takes it. */
    attemptSequence: `"${schema}"."attempts"`,
    ms,
    /** One of the functions the schema defines (the many-row rewrites). */
    fn: (name: string) => sql(`${schema}.${name}`),
    /** Runs one call of the store: a database that cannot be reached, or no answer within `timeoutMs`, is `unavailable`. */
    call: <R>(work: () => Promise<R>) => guard(work, timeoutMs),
    /**
     * Runs a call that rewrites `rows` candidates: its bound grows with the work asked
     * (REWRITE_MS_PER_ROW a row on top of `timeoutMs`), so that a big submission is not taken
     * for an outage, while an ordinary call keeps its bound.
     */
    callRewriting: <R>(rows: number, work: () => Promise<R>) =>
      guard(work, timeoutMs === 0 ? 0 : timeoutMs + Math.ceil(rows * REWRITE_MS_PER_ROW)),
    /**
     * The columns `runOf` reads, of the run aliased `r`: all null when a left join found no run.
     * Its state is `run_state`, beside a candidate's own `state`.
     */
    runColumns: () => sql`
      r.migration_id, r.candidate_id, r.attempt, r.state as run_state, r.current_step,
      ${ms('r.started_at')} as started_at, ${ms('r.updated_at')} as updated_at,
      ${ms('r.step_started_at')} as step_started_at, ${ms('r.step_dispatched_at')} as step_dispatched_at,
      r.owner, r.resumable, r.last_attempt,
      case when r.candidate_id is null then null else ${runSteps()} end as steps`,
    /** One candidate, aliased `c`, with its run, if any, aliased `r`. */
    fromCandidate: (migrationId: string, candidateId: string) => sql`
      from ${tables.candidates} c
      left join ${tables.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
      where c.migration_id = ${migrationId} and c.id = ${candidateId}`,
  }
}
