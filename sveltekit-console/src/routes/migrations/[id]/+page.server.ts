import { error } from '@sveltejs/kit'
import { runId, type CandidateQuery, type StatusCounts } from '@loom/core'
import { loadFrom, runActions } from '$lib/server/actions'
import { STATUSES, countsOf, isStatus, totalOf } from '$lib/status'
import type { Actions, PageServerLoad } from './$types'

/** Rows per page: the table stays as fast with 10,000 candidates as with 100. */
const PAGE_SIZE = 50
/** Metadata columns shown at most; the rest stay in the row's details. */
const MAX_METADATA_COLUMNS = 3

export const load: PageServerLoad = async ({ params, url, parent, locals, depends }) => {
  depends('loom:migrations')
  const { migrations } = await parent()
  const migration = migrations.find((m) => m.id === params.id)
  if (!migration) error(404, { message: `There is no migration with id ${params.id}.`, code: 'not_found' })

  const q = (url.searchParams.get('q') ?? '').trim().slice(0, 500)
  const statusParam = url.searchParams.get('status')
  const status = isStatus(statusParam) ? statusParam : undefined
  const requested = Number.parseInt(url.searchParams.get('page') ?? '1', 10)
  const base: CandidateQuery = q ? { q } : {}

  const countsFor = async (): Promise<StatusCounts> => {
    if (!q) return migration.counts
    const totals = await Promise.all(
      STATUSES.map((s) => loadFrom(locals.loom.searchCandidates(migration.id, { ...base, status: s, limit: 1 }))),
    )
    return countsOf((s) => totals[STATUSES.indexOf(s)]!.total)
  }

  const counts = await countsFor()
  const matching = status ? counts[status] : totalOf(counts)
  const pages = Math.max(1, Math.ceil(matching / PAGE_SIZE))
  const page = Number.isInteger(requested) && requested >= 1 ? Math.min(requested, pages) : 1
  const result = await loadFrom(
    locals.loom.searchCandidates(migration.id, {
      ...base,
      ...(status ? { status } : {}),
      limit: PAGE_SIZE,
      offset: (page - 1) * PAGE_SIZE,
    }),
  )

  const keyUse = new Map<string, number>()
  for (const c of result.candidates) for (const key of Object.keys(c.metadata ?? {})) keyUse.set(key, (keyUse.get(key) ?? 0) + 1)
  const metadataKeys = [...keyUse.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, MAX_METADATA_COLUMNS)
    .map(([key]) => key)

  return {
    migration,
    // Every row carries its run id, so its actions work the moment an event says it was queued.
    candidates: result.candidates.map((c) => ({ ...c, runId: c.runId ?? runId(migration.id, c.id) })),
    total: result.total,
    counts,
    filter: { q, status: status ?? null, page, pages },
    pageSize: PAGE_SIZE,
    metadataKeys,
  }
}

export const actions: Actions = {
  queue: runActions.queue,
  dequeue: runActions.dequeue,
  execute: runActions.execute,
  cancel: runActions.cancel,
}
