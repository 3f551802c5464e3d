import type { CandidateWithStatus } from '@loom/core'
import { loadFrom } from '$lib/server/actions'
import { latestActivity } from '$lib/server/activity'
import { countsOf } from '$lib/status'
import type { PageServerLoad } from './$types'

const FOUND_PER_MIGRATION = 10

export const load: PageServerLoad = async ({ parent, url, locals }) => {
  const { migrations } = await parent()
  const totals = {
    migrations: migrations.length,
    ...countsOf(
      (s) => migrations.reduce((sum, m) => sum + m.counts[s], 0),
      migrations.reduce((sum, m) => sum + m.counts.failed, 0),
    ),
  }

  const activity = await loadFrom(latestActivity(locals.loom, migrations))

  const find = (url.searchParams.get('find') ?? '').trim().slice(0, 200)
  let found: Array<{ migrationId: string; migrationName: string; candidates: CandidateWithStatus[]; total: number }> | undefined
  if (find) {
    const pages = await Promise.all(
      migrations.map(async (m) => {
        const page = await loadFrom(locals.loom.searchCandidates(m.id, { q: find, limit: FOUND_PER_MIGRATION }))
        return { migrationId: m.id, migrationName: m.name, candidates: page.candidates, total: page.total }
      }),
    )
    found = pages.filter((p) => p.total > 0)
  }

  return { totals, activity, find, found }
}
