import { error } from '@sveltejs/kit'
import { runId, type CandidateQuery, type StatusCounts } from '@loom/core'
import { loadFrom, runActions } from '$lib/server/actions'
import { isLastOutcome } from '$lib/history'
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
  const lastOutcomeParam = url.searchParams.get('lastOutcome')
  const lastOutcome = isLastOutcome(lastOutcomeParam) ? lastOutcomeParam : undefined
  // Only not-started candidates have a last outcome: that filter stands in for the status one
  // instead of narrowing it, so a leftover `status=queued` cannot make it match nothing.
  const status = !lastOutcome && isStatus(statusParam) ? statusParam : undefined
  const requested = Number.parseInt(url.searchParams.get('page') ?? '1', 10)
  const base: CandidateQuery = q ? { q } : {}
  const totalOfQuery = async (query: CandidateQuery) =>
    (await loadFrom(locals.loom.searchCandidates(migration.id, { ...base, ...query, limit: 1 }))).total

  const countsFor = async (): Promise<StatusCounts> => {
    if (!q) return migration.counts
    const [failed, ...totals] = await Promise.all([
      totalOfQuery({ lastOutcome: 'failed' }),
      ...STATUSES.map((s) => totalOfQuery({ status: s })),
    ])
    return countsOf((s) => totals[STATUSES.indexOf(s)]!, failed)
  }

  const counts = await countsFor()
  // The failed are counted on every migration; the other outcomes only when asked for.
  const matchingOf = async () => {
    if (lastOutcome === 'failed') return counts.failed
    if (lastOutcome) return totalOfQuery({ lastOutcome })
    return status ? counts[status] : totalOf(counts)
  }
  const matching = await matchingOf()
  const pages = Math.max(1, Math.ceil(matching / PAGE_SIZE))
  const page = Number.isInteger(requested) && requested >= 1 ? Math.min(requested, pages) : 1
  const result = await loadFrom(
    locals.loom.searchCandidates(migration.id, {
      ...base,
      ...(status ? { status } : {}),
      ...(lastOutcome ? { lastOutcome } : {}),
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
    filter: { q, status: status ?? null, lastOutcome: lastOutcome ?? null, page, pages },
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
