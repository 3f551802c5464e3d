import { LoomError } from '@loom/core'
import type { MigrationStore } from '@loom/core/store'
import type { StoreContext } from './context'
import { activityOf, type Row } from './rows'

type ActivityMethods = Pick<MigrationStore, 'listActivity' | 'watchActivity' | 'pruneActivity'>

/** The largest id the log can hold (bigint); a cursor past it has nothing after it. */
const MAX_ID = 9_223_372_036_854_775_807n

/**
 * How long a read waits, at most, for older transactions to end when entries already
 * committed are held back behind them (see `listActivity`), and the first pause.
 */
const MAX_WAIT_MS = 1_000
const FIRST_PAUSE_MS = 2
/** How soon watchers look again after a read that ended before entries held back. */
const HELD_RETRY_MS = 250

/**
 * The activity log, read page by page. Entries are written by the statements that make the
 * changes (runs, migrations, candidates); their ids come from the schema's `activity_id()`,
 * which follows the writing transaction's id (see version 4 of the schema).
 */
export function activityMethods(ctx: StoreContext): ActivityMethods {
  const { sql, tables: T, fn, ms, call, timeoutMs } = ctx
  const maxWaitMs = timeoutMs > 0 ? Math.min(MAX_WAIT_MS, timeoutMs / 2) : MAX_WAIT_MS

  return {
    listActivity({ migrationId, candidateId, after, limit, newest = false }) {
      return call(async () => {
        const cursor = cursorOf(after)
        if (cursor === undefined || !(limit >= 1)) return []
        // Each read walks one range of one index, whatever the plan (a prepared statement's
        // generic plan does not know which migration it reads): a migration's entries from the
        // cursor on, as (migration_id, id) orders them, a candidate's, as (migration_id,
        // candidate_id, id) does, or the whole log's, as the index on (id + 0) does (version 5).
        // The migration's range is a row comparison, not an equality, so that the planner keeps
        // its column in the order: the expression index cannot serve it, and an index on id
        // alone would otherwise look as good, and walk every other migration's entries. A row
        // comparison bounds a btree scan by its first column only, so the candidate's range takes
        // equalities: the candidate index then has every condition of any other index, and more.
        const [where, below, newestWhere, asc, desc] =
          migrationId === undefined
            ? [sql`(a.id + 0) > ${cursor}::bigint`, sql`(a.id + 0)`, sql`true`, sql`(a.id + 0)`, sql`(a.id + 0) desc`]
            : candidateId === undefined
              ? [
                  sql`(a.migration_id, a.id) > (${migrationId}::text, ${cursor}::bigint) and a.migration_id <= ${migrationId}::text`,
                  sql`a.id`,
                  sql`a.migration_id >= ${migrationId}::text and a.migration_id <= ${migrationId}::text`,
                  sql`a.migration_id, a.id`,
                  sql`a.migration_id desc, a.id desc`,
                ]
              : [
                  sql`a.migration_id = ${migrationId}::text and a.candidate_id = ${candidateId}::text and a.id > ${cursor}::bigint`,
                  sql`a.id`,
                  sql`a.migration_id = ${migrationId}::text and a.candidate_id = ${candidateId}::text`,
                  sql`a.id`,
                  sql`a.id desc`,
                ]
        // One statement, one snapshot: the page of committed entries below the horizon (no
        // transaction still running can write an id below it, so a later read after this page's
        // last id misses nothing), and the newest committed entry, which tells whether entries
        // are held back above the horizon (one probe at the end of the same range). The newest
        // entries are read backwards from the horizon down, and come newest first.
        const read = () => sql`
          with horizon as materialized (select ${fn('activity_horizon')}() as id),
          page as (
            select a.id::text as id, ${ms('a.at')} as at, a.attempt, a.migration_id, a.candidate_id, a.run_id, a.type,
              a.actor_kind, a.actor_name, a.detail
            from ${T.activity} a
            where ${where} and ${below} < (select id from horizon)
            order by ${newest ? desc : asc}
            limit ${Math.floor(limit)}::bigint
          ),
          newest as (
            select a.id from ${T.activity} a
            where ${newestWhere}
            order by ${desc}
            limit 1
          )
          select p.*, (select n.id >= h.id and n.id > ${cursor}::bigint from newest n, horizon h) as held
          from (select 1) one left join page p on true
          order by p.id::bigint ${newest ? sql`desc` : sql``}
        `
        // Entries held back wait for every transaction older than theirs to end, which for the
        // store's own one-statement writes is a few milliseconds; a short page waits for them (so
        // a change is in the log its writer reads next), up to MAX_WAIT_MS, after which the page
        // ends before them and the next read, after its last id, finds them. The newest entries
        // are read as they stand: what is held back is newer still, and the next read finds it.
        const started = Date.now()
        for (let pause = FIRST_PAUSE_MS; ; pause *= 2) {
          const rows = await read()
          const entries = rows.filter((row: Row) => row.id !== null).map(activityOf)
          if (entries.length >= limit || rows[0]?.held !== true || newest) return entries
          if (Date.now() - started + pause > maxWaitMs) {
            if (ctx.hub.watched()) ctx.hub.wakeSoon(HELD_RETRY_MS)
            return entries
          }
          await new Promise((resolve) => setTimeout(resolve, pause))
        }
      })
    },

    watchActivity: (watcher) => ctx.hub.watch(watcher),

    pruneActivity(before, limit) {
      return call(async () => {
        // The oldest entries in id order (walking the index on (id + 0) from its start), of which
        // those written before the cutoff go: each call costs its batch, however long the log.
        const rows = await sql`
          with oldest as (
            select a.migration_id, a.id from ${T.activity} a order by (a.id + 0) limit ${Math.floor(limit)}::bigint
          )
          delete from ${T.activity} a using oldest o
          where a.migration_id = o.migration_id and a.id = o.id and a.at < ${before}::timestamptz
          returning 1
        `
        return rows.length
      })
    },
  }
}

/**
 * The bigint of a cursor: 0 for none (every id is greater), undefined for one past the
 * largest id (nothing is after it). Cursors are the ids this store handed out: digits.
 */
function cursorOf(after: string | undefined): string | undefined {
  if (after === undefined) return '0'
  if (typeof after !== 'string' || !/^[0-9]{1,30}$/.test(after)) {
    throw new LoomError('invalid', `after: "${String(after).slice(0, 40)}" is not a cursor of the activity log (digits)`, {
      details: { field: 'after' },
    })
  }
  return BigInt(after) > MAX_ID ? undefined : BigInt(after).toString()
}
