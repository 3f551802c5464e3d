import type { Candidate, CandidateQuery, CandidateStatus, LastOutcome, StatusCounts } from './schemas'

/**
 * Whether a candidate matches a listing query: its status equals `status`, its last attempt
 * ended as `lastOutcome` (`outcome`, set only while it is `not_started` after an attempt), and
 * `q` (case-insensitive) is a substring of its id or of one of its metadata values. Stores that
 * filter in memory use this; SQL stores express the same rule in SQL.
 */
export function matchesQuery(candidate: Candidate, status: CandidateStatus, query: CandidateQuery, outcome?: LastOutcome): boolean {
  if (query.status && status !== query.status) return false
  if (query.lastOutcome && outcome !== query.lastOutcome) return false
  if (!query.q) return true
  const needle = query.q.toLowerCase()
  if (candidate.id.toLowerCase().includes(needle)) return true
  return Object.values(candidate.metadata ?? {}).some((value) => value.toLowerCase().includes(needle))
}

/**
 * How many candidates match `query`, from a migration's kept counts: `total` candidates,
 * `counts` by status and `outcomes` (of the `not_started` ones, by how their last attempt
 * ended). Undefined when the counts cannot say (a `q` must look at the candidates).
 */
export function totalFromCounts(
  query: Pick<CandidateQuery, 'status' | 'lastOutcome' | 'q'>,
  total: number,
  counts: StatusCounts,
  outcomes: Record<LastOutcome, number>,
): number | undefined {
  if (query.q) return undefined
  if (query.lastOutcome) return query.status && query.status !== 'not_started' ? 0 : outcomes[query.lastOutcome]
  return query.status ? counts[query.status] : total
}
