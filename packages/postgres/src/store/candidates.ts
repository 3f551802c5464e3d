import type { CandidateQuery, CandidateWithStatus } from '@loom/core'
import { joinRunId, type CandidatePage, type MigrationStore } from '@loom/core/store'
import type { StoreContext } from './context'
import { candidateOf, candidateRows, draftOrNull, foldCase, runOf } from './rows'

type CandidateMethods = Pick<MigrationStore, 'replaceCandidates' | 'listCandidates' | 'getCandidate'>

/** A migration's candidates: replaced by the schema's function, listed with their statuses in one statement. */
export function candidateMethods(ctx: StoreContext): CandidateMethods {
  const { sql, tables: T, fn, call, candidateStatus, runColumns, fromCandidate } = ctx
  return {
    replaceCandidates(migrationId, candidates, activity) {
      return call(async () => {
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
        const q = query.q ? foldCase(query.q) : null
        const status = query.status ?? null
        const outcome = query.lastOutcome ?? null
        /** The candidates that match, joined with their status; the filter is written once for both queries below. */
        const matching = () => sql`
          from ${T.candidates} c
          left join ${T.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
          cross join lateral (select ${candidateStatus()} as status) st
          where c.migration_id = ${migrationId}
            and (${status}::text is null or st.status = ${status}::text)
            and (${outcome}::text is null or r.last_outcome = ${outcome}::text)
            and (${q}::text is null or exists (select 1 from unnest(c.search) term where strpos(term, ${q}::text) > 0))
        `
        // The matching keys are gathered first, whole (materialized), then counted, ordered and
        // paged, and only the page's rows are read in full. Asked for a page and a count in one
        // plan, PostgreSQL costs the LIMIT as if it could stop early and walks every candidate in
        // order, looking up each one's run; gathered first, the match is a join of the two tables
        // whatever the filter, so a filter on status and one on last outcome cost alike.
        // Limit and offset are bigint: core lets an offset reach MAX_OFFSET (2^31 - 1), the top of
        // an int4, and a caller of the store itself may go past it.
        // The page carries the total; only an empty page (no match, an offset past the end, or
        // no such migration) needs a second statement to tell which.
        const rows = await sql`
          with matched as materialized (select c.id, c.position, st.status, r.last_attempt ${matching()}),
          page as (
            select * from matched order by position
            limit ${query.limit ?? null}::bigint offset ${query.offset ?? 0}::bigint
          )
          select (select count(*) from matched)::int as total, c.id, c.kind, c.metadata, c.state, c.files, p.status, p.last_attempt
          from page p
          join ${T.candidates} c on c.migration_id = ${migrationId} and c.id = p.id
          order by p.position
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
          else if (row.last_attempt !== null) candidate.lastAttempt = row.last_attempt
          candidates.push(candidate)
        }
        return { candidates, total: Number(rows[0]!.total) }
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
