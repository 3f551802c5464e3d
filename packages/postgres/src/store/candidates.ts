import type { CandidateQuery, CandidateWithStatus } from '@loom/core'
import { joinRunId, totalFromCounts, type CandidatePage, type MigrationStore } from '@loom/core/store'
import type { StoreContext } from './context'
import { candidateOf, candidateRows, countsOf, draftOrNull, foldCase, runOf } from './rows'

type CandidateMethods = Pick<MigrationStore, 'replaceCandidates' | 'listCandidates' | 'getCandidate'>

/** A migration's candidates: replaced by the schema's function, listed with their statuses in one statement. */
export function candidateMethods(ctx: StoreContext): CandidateMethods {
  const { sql, tables: T, fn, call, runColumns, fromCandidate } = ctx
  return {
    replaceCandidates(migrationId, candidates, activity) {
      return ctx.callRewriting(candidates.length, async () => {
        const [row] = await sql`
          select ${fn('replace_candidates')}(
            ${migrationId}::text, ${candidateRows(candidates)}::text::json, ${draftOrNull(activity)}::text::json
          ) as replaced
        `
        if (row!.replaced === true && activity) ctx.hub.wrote()
        return row!.replaced === true
      })
    },

    listCandidates(migrationId, query: CandidateQuery = {}): Promise<CandidatePage | undefined> {
      return call(async () => {
        const q = query.q ? foldCase(query.q) : undefined
        // Only the filters the query has are written, so that each has a plan of its own that
        // uses its index: candidates_by_status, candidates_by_outcome, candidates_search (trigram,
        // for the LIKE; the terms themselves then decide, as matchesQuery does), and
        // candidates_by_position for the rest. A cursor is the position of its candidate.
        const where = sql`
          c.migration_id = ${migrationId}
          ${query.status ? sql`and c.status = ${query.status}::text` : sql``}
          ${query.lastOutcome ? sql`and c.last_outcome = ${query.lastOutcome}::text` : sql``}
          ${
            q === undefined
              ? sql``
              : sql`and c.search_text like ${`%${likeEscaped(q)}%`}::text
                  and exists (select 1 from unnest(c.search) term where strpos(term, ${q}::text) > 0)`
          }
        `
        const cursor =
          query.after === undefined
            ? sql``
            : sql`and c.position > (select a.position from ${T.candidates} a where a.migration_id = ${migrationId} and a.id = ${query.after})`
        // Limit and offset are bigint: core lets an offset reach MAX_OFFSET (2^31 - 1), the top of
        // an int4, and a caller of the store itself may go past it.
        const paging = sql`limit ${query.limit ?? null}::bigint offset ${query.offset ?? 0}::bigint`
        // The last attempt is looked up by key for each row of the page, not joined: right after a
        // big submission the planner's statistics still hold a few rows, and a join it plans from
        // them (a nested loop over every run for each candidate) costs seconds at 100,000.
        const columns = sql`c.position, c.id, c.kind, c.metadata, c.state, c.files, c.status,
          (select r.last_attempt from ${T.runs} r
            where c.status = 'not_started' and r.migration_id = c.migration_id and r.candidate_id = c.id) as last_attempt`
        const counts = sql`m.n_candidates, m.n_queued, m.n_running, m.n_completed, m.n_failed, m.n_rejected, m.n_cancelled, m.n_dequeued`
        // One statement, whose rows carry the migration's kept counts (one row of nulls besides
        // when the page is empty; none when there is no such migration). A search first gathers
        // what it matches, through the trigram index, in proportion to the matches, then counts
        // and pages that; without one, the page is read in listing order from its index and stops
        // at the limit, and the total is a kept count.
        const rows =
          q === undefined
            ? await sql`
                select ${counts}, p.*
                from ${T.migrations} m
                left join lateral (
                  select ${columns} from ${T.candidates} c where ${where} ${cursor} order by c.position ${paging}
                ) p on true
                where m.id = ${migrationId}
                order by p.position
              `
            : await sql`
                with matched as materialized (select c.id, c.position from ${T.candidates} c where ${where})
                select ${counts}, (select count(*) from matched)::int as matched, p.*
                from ${T.migrations} m
                left join lateral (
                  select ${columns}
                  from (select * from matched c where true ${cursor} order by position ${paging}) k
                  join ${T.candidates} c on c.migration_id = ${migrationId} and c.id = k.id
                ) p on true
                where m.id = ${migrationId}
                order by p.position
              `
        const [first] = rows
        if (!first) return undefined
        const total =
          totalFromCounts(query, first.n_candidates, countsOf(first), {
            failed: first.n_failed,
            rejected: first.n_rejected,
            cancelled: first.n_cancelled,
            dequeued: first.n_dequeued,
          }) ?? first.matched
        if (first.id === null) return { candidates: [], total }
        const candidates: CandidateWithStatus[] = []
        for (const row of rows) {
          const candidate = candidateOf(row) as CandidateWithStatus
          candidate.status = row.status
          if (row.status !== 'not_started') candidate.runId = joinRunId(migrationId, row.id)
          else if (row.last_attempt !== null) candidate.lastAttempt = row.last_attempt
          candidates.push(candidate)
        }
        return { candidates, total }
      })
    },

    getCandidate(migrationId, candidateId) {
      return call(async () => {
        const [row] = await sql`
          select c.id, c.kind, c.metadata, c.state, c.files, ${runColumns()}
          ${fromCandidate(migrationId, candidateId)}
        `
        if (!row) return undefined
        const candidate = candidateOf(row)
        if (row.candidate_id === null) return { candidate }
        return { candidate, run: runOf(row) }
      })
    },
  }
}

/** `text` with LIKE's wildcards and escape character escaped, to be matched as it is. */
function likeEscaped(text: string): string {
  return text.replace(/[\\%_]/g, (ch) => `\\${ch}`)
}
