import type { MigrationStore, StageCandidatesOutcome } from '@loom/core/store'
import type { StoreContext } from './context'
import { candidateRows, draftOrNull } from './rows'

type DiscoveryMethods = Pick<
  MigrationStore,
  'patchCandidates' | 'openDiscovery' | 'stageCandidates' | 'commitDiscovery' | 'pruneDiscoveries'
>

/**
 * Patches of a candidate list, and discoveries: lists staged in parts in the store (so parts
 * may reach any replica), swapped in by one call. Each is one call of a function of the
 * schema (version 7) that locks before it checks.
 */
export function discoveryMethods(ctx: StoreContext): DiscoveryMethods {
  const { sql, tables: T, fn, call } = ctx
  // A table, named in the schema as `fn` names its functions.
  const discoveries = fn('discoveries')
  return {
    patchCandidates(migrationId, patch, activity) {
      return ctx.callRewriting((patch.upsert?.length ?? 0) + (patch.remove?.length ?? 0), async () => {
        const [row] = await sql`
          select ${fn('patch_candidates')}(
            ${migrationId}::text, ${candidateRows(patch.upsert)}::text::json, ${JSON.stringify(patch.remove)}::text::json,
            ${draftOrNull(activity)}::text::json
          ) as patched
        `
        if (row!.patched === true && activity) ctx.hub.wrote()
        return row!.patched === true
      })
    },

    openDiscovery({ id, migrationId, expiresAt }) {
      return call(async () => {
        const rows = await sql`
          insert into ${discoveries} (id, migration_id, expires_at)
          select ${id}::text, m.id, ${expiresAt}::timestamptz from ${T.migrations} m where m.id = ${migrationId}::text
          returning id
        `
        return rows.length === 1
      })
    },

    stageCandidates({ migrationId, discoveryId, candidates, at, expiresAt, limit }) {
      return call(async (): Promise<StageCandidatesOutcome> => {
        const [row] = await sql`
          select o_outcome as outcome, o_total as total, o_candidate as candidate
          from ${fn('stage_candidates')}(
            ${migrationId}::text, ${discoveryId}::text, ${candidateRows(candidates)}::text::json,
            ${at}::timestamptz, ${expiresAt}::timestamptz, ${limit}::integer
          )
        `
        switch (row!.outcome) {
          case 'staged':
            return { outcome: 'staged', total: row!.total }
          case 'duplicate':
            return { outcome: 'duplicate', candidateId: row!.candidate }
          case 'too_many':
            return { outcome: 'too_many', total: row!.total }
          default:
            return { outcome: 'not_found' }
        }
      })
    },

    async commitDiscovery(migrationId, discoveryId, at, activity) {
      // The bound grows with what was staged, read first (one row by its key).
      const [staged] = await call(() => sql`select staged from ${discoveries} where id = ${discoveryId}::text`)
      return ctx.callRewriting(Number(staged?.staged ?? 0), async () => {
        // The count is the function's to set: a count in the draft's detail would be a second key.
        const draft = activity && { ...activity, detail: withoutCount(activity.detail) }
        const [row] = await sql`
          select ${fn('commit_discovery')}(
            ${migrationId}::text, ${discoveryId}::text, ${at}::timestamptz, ${draftOrNull(draft)}::text::json
          ) as committed
        `
        if (row!.committed === null) return 'not_found'
        if (activity) ctx.hub.wrote()
        return 'committed'
      })
    },

    pruneDiscoveries(before, limit) {
      return call(async () => {
        // Skipping locked rows: a discovery a part or a commit holds right now is not waited for.
        const [row] = await sql`
          with gone as (
            delete from ${discoveries} where id in (
              select id from ${discoveries} where expires_at < ${before}::timestamptz
              order by expires_at limit ${limit}::integer for update skip locked
            )
            returning 1
          )
          select count(*)::int as count from gone
        `
        return row!.count as number
      })
    },
  }
}

function withoutCount(detail: Record<string, unknown>): Record<string, unknown> {
  const { count: _count, ...rest } = detail
  return rest
}
