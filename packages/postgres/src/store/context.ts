import type { Sql } from 'postgres'
import { isEmbedded } from '../embedded'
import { guard } from '../failures'

/** After LISTEN failed (the database away), the next try waits this long. */
const LISTEN_RETRY_MS = 1_000

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
  /** Who waits for entries (`watchActivity`), woken once per turn of the event loop. */
  const watchers = new Set<() => void>()
  let waking = false
  const wake = () => {
    if (waking) return
    waking = true
    queueMicrotask(() => {
      waking = false
      for (const watcher of watchers) watcher()
    })
  }
  const embedded = isEmbedded(sql)
  /**
   * NOTIFY, after the writes and outside their transactions: a transaction that notifies takes
   * a lock of the whole database before it commits and holds it until its commit is on disk,
   * which makes concurrent writers commit one at a time (a trigger on the log cost +12 to +85 %
   * a transition in bench/activity.ts). One notification at a time per process instead: writes
   * made while one is on its way are told by the next, so under load a process sends about one
   * per round trip, and each wakes every listener to read from its cursor. A notification lost
   * with its process only delays the readers until the next change anywhere: they miss nothing.
   */
  let notifying = false
  let pending = false
  const announce = () => {
    pending = true
    if (notifying) return
    notifying = true
    pending = false
    void sql
      .notify(`${schema}.activity`, '')
      .catch(() => {})
      .finally(() => {
        notifying = false
        if (pending) announce()
      })
  }
  /** The LISTEN that wakes the watchers for every process's entries, while any watches. */
  let listening: Promise<{ unlisten(): Promise<void> } | undefined> | undefined
  const listen = () => {
    // Every process's entries arrive as notifications (`announce`, sent by the writer after its
    // write committed). The client listens on a connection of its own and listens again after
    // a reconnect; each time it does, the watchers wake, for whatever came while it was away.
    listening = sql.listen(`${schema}.activity`, wake, wake).catch(() => {
      listening = undefined
      const timer = setTimeout(() => {
        if (watchers.size > 0 && !listening) listen()
      }, LISTEN_RETRY_MS)
      ;(timer as { unref?: () => void }).unref?.()
      return undefined
    })
  }
  return {
    sql,
    tables,
    /** Adds a watcher of the log; returns its remover. */
    watch(watcher: () => void): () => void {
      const entry = () => watcher()
      watchers.add(entry)
      if (!listening && !embedded) listen()
      return () => {
        watchers.delete(entry)
        if (watchers.size > 0 || !listening) return
        const stopping = listening
        listening = undefined
        void stopping.then((listener) => listener?.unlisten()).catch(() => {})
      }
    },
    /** Whether anyone watches the log. */
    watched: () => watchers.size > 0,
    /**
     * A call of this store added entries: on the embedded database, wake this process's
     * watchers; on a server, tell every listening process (this one included) with NOTIFY.
     */
    wrote: () => {
      if (embedded) {
        if (watchers.size > 0) wake()
      } else announce()
    },
    /** Wakes the watchers soon: a read ended before entries still held back, and no write may come to wake them. */
    wakeSoon(ms: number) {
      const timer = setTimeout(wake, ms)
      ;(timer as { unref?: () => void }).unref?.()
    },
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
     * The candidate status of the run aliased `r` (`not_started` without one): core's
     * `candidateStatusOf` in SQL, so that listing filters, pages and counts in the database.
     */
    candidateStatus: () => sql`case when r.state in ('queued', 'running', 'completed') then r.state else 'not_started' end`,
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
