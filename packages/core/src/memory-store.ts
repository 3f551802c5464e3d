import type {
  ActivityDraft,
  ActivityEntry,
  CandidatePage,
  MigrationDefinition,
  MigrationRecord,
  MigrationStore,
  MigrationSummary,
  RecordStepOutcome,
  RunRecord,
  RunState,
  TransitionResult,
} from './ports'
import type { CancelledAttempt, Candidate, CandidateQuery, LastOutcome, StatusCounts } from './schemas'
import { candidateStatusOf, decideStepProgress, decideStepReport, decideTransition, emptyCounts, standingOf } from './rules'
import { candidateWithStatus } from './loom/shapes'
import { matchesQuery, totalFromCounts } from './candidate-query'

interface StoredMigration {
  record: MigrationRecord
  /** Insertion-ordered: submission order is the listing order. */
  candidates: Map<string, Candidate>
  /** The candidate ids in listing order, and each one's index in it: where a cursor resumes. */
  order: string[]
  positions: Map<string, number>
  runs: Map<string, RunRecord>
  cancelledAttempts: CancelledAttempt[]
  /** Kept by every change, so that summaries and totals read no candidate. */
  counts: StatusCounts
  /** Of the `not_started` candidates, how many had their last attempt end each way. */
  outcomes: Record<LastOutcome, number>
  /** Drawn from the store's counter by every change, so a migration deleted and made again never repeats one. */
  version: number
}

/**
 * A `MigrationStore` in this process's memory, for tests, examples and single-process
 * embedding where losing state on restart is acceptable.
 *
 * Every method does its reads and writes without awaiting in between, so on the single
 * JavaScript thread each one is atomic: of concurrent transitions for one candidate exactly
 * one wins. Records go in and out as copies.
 *
 * @example
 * const loom = createLoom({ store: memoryStore(), engine: localEngine() })
 */
export function memoryStore(): MigrationStore {
  const migrations = new Map<string, StoredMigration>()
  let attempts = 0
  let versions = 0
  /** Each process's lease: until when it is alive. */
  const leases = new Map<string, string>()
  const leaseLapsed = (owner: string | undefined, at: string) => {
    const until = owner === undefined ? undefined : leases.get(owner)
    return until === undefined || Date.parse(until) < Date.parse(at)
  }

  /**
   * The activity log: the whole of it, and per migration and per candidate, each oldest first;
   * an entry's id is its number in the order of writing.
   */
  let log: ActivityEntry[] = []
  const activity = new Map<string, ActivityEntry[]>()
  const append = (key: string, entry: ActivityEntry) => {
    const entries = activity.get(key)
    if (entries) entries.push(entry)
    else activity.set(key, [entry])
  }
  /** Who waits for entries, woken once per turn of the event loop however many were written. */
  const watchers = new Set<() => void>()
  let waking = false
  const wake = () => {
    waking = false
    for (const watcher of watchers) watcher()
  }
  let logged = 0
  const write = (draft: ActivityDraft) => {
    const entry = { ...structuredClone(draft), id: String(++logged) }
    log.push(entry)
    append(draft.migrationId, entry)
    if (draft.candidateId !== undefined) append(`${draft.migrationId}\u0000${draft.candidateId}`, entry)
    if (watchers.size > 0 && !waking) {
      waking = true
      queueMicrotask(wake)
    }
  }

  const summary = (m: StoredMigration): MigrationSummary => ({
    ...clone(m.record),
    counts: { ...m.counts },
    cancelledAttempts: clone(m.cancelledAttempts),
    version: String(m.version),
  })

  /** Adds (`sign` 1) or takes away (-1) a candidate with this run from the kept counts. */
  const tally = (m: StoredMigration, run: RunRecord | undefined, sign: 1 | -1) => {
    const { status, outcome } = standingOf(run)
    m.counts[status] += sign
    if (outcome) {
      m.outcomes[outcome] += sign
      if (outcome === 'failed') m.counts.failed += sign
    }
  }

  const replace = (m: StoredMigration, candidates: Candidate[]) => {
    const next = new Map<string, Candidate>()
    for (const c of candidates) next.set(c.id, copyCandidate(c))
    for (const [id, c] of m.candidates) {
      if (!next.has(id) && candidateStatusOf(m.runs.get(id)?.state) !== 'not_started') next.set(id, c)
    }
    for (const id of m.runs.keys()) if (!next.has(id)) m.runs.delete(id)
    m.candidates = next
    m.order = [...next.keys()]
    m.positions = new Map(m.order.map((id, index) => [id, index]))
    m.counts = emptyCounts()
    m.outcomes = { failed: 0, rejected: 0, cancelled: 0, dequeued: 0 }
    for (const id of m.order) tally(m, m.runs.get(id), 1)
  }

  return {
    async upsertMigration(definition: MigrationDefinition, candidates?: Candidate[], claimant?: string, activity?: ActivityDraft) {
      const existing = migrations.get(definition.id)
      const owner = existing?.record.owner ?? claimant
      if (existing && claimant !== undefined && owner !== claimant) return clone(existing.record)
      if (activity) write(activity)
      const record: MigrationRecord = {
        ...clone(definition),
        ...(owner === undefined ? {} : { owner }),
        createdAt: existing?.record.createdAt ?? new Date().toISOString(),
      }
      const m: StoredMigration = existing ?? {
        record,
        candidates: new Map(),
        order: [],
        positions: new Map(),
        runs: new Map(),
        cancelledAttempts: [],
        counts: emptyCounts(),
        outcomes: { failed: 0, rejected: 0, cancelled: 0, dequeued: 0 },
        version: 0,
      }
      m.record = record
      m.version = ++versions
      if (candidates) replace(m, candidates)
      migrations.set(definition.id, m)
      return clone(record)
    },

    async getMigration(id) {
      const m = migrations.get(id)
      return m && summary(m)
    },

    async listMigrations() {
      return [...migrations.values()].map(summary)
    },

    async deleteMigration(id, activity) {
      const m = migrations.get(id)
      if (!m) return 'not_found'
      for (const run of m.runs.values()) if (run.state === 'running') return 'running'
      migrations.delete(id)
      if (activity) write(activity)
      return 'deleted'
    },

    async replaceCandidates(migrationId, candidates, activity) {
      const m = migrations.get(migrationId)
      if (!m) return false
      replace(m, candidates)
      m.version = ++versions
      if (activity) write(activity)
      return true
    },

    async listCandidates(migrationId, query: CandidateQuery = {}): Promise<CandidatePage | undefined> {
      const m = migrations.get(migrationId)
      if (!m) return undefined
      const matches = (id: string) => {
        const run = m.runs.get(id)
        const { status, outcome } = standingOf(run)
        return matchesQuery(m.candidates.get(id)!, status, query, outcome) ? run : false
      }
      // From the cursor's place, or the offset's: only as far as the page reaches.
      const cursor = query.after === undefined ? undefined : m.positions.get(query.after)
      if (query.after !== undefined && cursor === undefined) return { candidates: [], total: countMatches(m, query, matches) }
      let skip = cursor === undefined ? (query.offset ?? 0) : 0
      const limit = query.limit ?? Number.POSITIVE_INFINITY
      const candidates: CandidatePage['candidates'] = []
      for (let index = cursor === undefined ? 0 : cursor + 1; index < m.order.length && candidates.length < limit; index++) {
        const id = m.order[index]!
        const run = matches(id)
        if (run === false) continue
        if (skip > 0) {
          skip--
          continue
        }
        const listed = candidateWithStatus(copyCandidate(m.candidates.get(id)!), run)
        if (listed.lastAttempt) listed.lastAttempt = clone(listed.lastAttempt)
        candidates.push(listed)
      }
      return { candidates, total: countMatches(m, query, matches) }
    },

    async versions(ids) {
      const found = new Map<string, string>()
      for (const id of ids ?? migrations.keys()) {
        const m = migrations.get(id)
        if (m) found.set(id, String(m.version))
      }
      return found
    },

    async getCandidate(migrationId, candidateId) {
      const m = migrations.get(migrationId)
      const candidate = m?.candidates.get(candidateId)
      if (!m || !candidate) return undefined
      const run = m.runs.get(candidateId)
      return run ? { candidate: copyCandidate(candidate), run: clone(run) } : { candidate: copyCandidate(candidate) }
    },

    async transition(request): Promise<TransitionResult> {
      const m = migrations.get(request.migrationId)
      if (!m?.candidates.has(request.candidateId)) return { ok: false, reason: 'not_found' }
      const previous = m.runs.get(request.candidateId)
      const decision = decideTransition(previous, request)
      if (!decision.ok) return decision
      const run: RunRecord = { ...structuredClone(decision.next), attempt: decision.attempt === 'new' ? ++attempts : decision.attempt }
      tally(m, previous, -1)
      m.runs.set(request.candidateId, run)
      tally(m, run, 1)
      m.version = ++versions
      if (decision.cancelledAttempt) m.cancelledAttempts.push(decision.cancelledAttempt)
      write({ ...decision.activity, attempt: run.attempt })
      return { ok: true, run: clone(run), previous: decision.previous }
    },

    async recordStep(request): Promise<RecordStepOutcome> {
      const m = migrations.get(request.migrationId)
      if (!m?.candidates.has(request.candidateId)) return { outcome: 'not_found' }
      const decision = decideStepReport(m.runs.get(request.candidateId), request)
      if (decision.outcome === 'not_running') return decision
      if (decision.outcome === 'recorded') {
        m.runs.set(request.candidateId, decision.run)
        write(decision.activity)
      }
      return { outcome: decision.outcome, run: clone(decision.run) }
    },

    async markStep(request) {
      const runs = migrations.get(request.migrationId)?.runs
      const next = decideStepProgress(runs?.get(request.candidateId), request)
      if (!runs || !next) return false
      runs.set(request.candidateId, next.run)
      if (next.activity) write(next.activity)
      return true
    },

    async listRuns(state: RunState) {
      const runs: RunRecord[] = []
      for (const m of migrations.values()) for (const run of m.runs.values()) if (run.state === state) runs.push(clone(run))
      return runs
    },

    async renewLease(owner, until) {
      leases.set(owner, until)
    },

    async claimRuns({ owner, at, limit }) {
      const claimed: RunRecord[] = []
      for (const m of migrations.values()) {
        for (const [id, run] of m.runs) {
          if (claimed.length >= limit) return claimed
          if (run.state !== 'running' || !leaseLapsed(run.owner, at)) continue
          const taken = { ...run, owner }
          m.runs.set(id, taken)
          claimed.push(clone(taken))
        }
      }
      return claimed
    },

    async listActivity({ migrationId, candidateId, after, limit, newest }) {
      const entries =
        migrationId === undefined
          ? log
          : (activity.get(candidateId === undefined ? migrationId : `${migrationId}\u0000${candidateId}`) ?? [])
      // Entries are in id order, so the first entry after the cursor is found by bisection.
      const from = after === undefined ? 0 : firstAfter(entries, Number(after))
      const page = newest ? entries.slice(Math.max(from, entries.length - limit)).reverse() : entries.slice(from, from + limit)
      return page.map((entry) => structuredClone(entry))
    },

    async pruneActivity(before, limit) {
      const cutoff = Date.parse(before)
      let count = 0
      while (count < limit && count < log.length && Date.parse(log[count]!.at) < cutoff) count++
      if (count === 0) return 0
      const last = Number(log[count - 1]!.id)
      log = log.slice(count)
      for (const [key, entries] of activity) {
        const kept = entries.slice(firstAfter(entries, last))
        if (kept.length > 0) activity.set(key, kept)
        else activity.delete(key)
      }
      return count
    },

    watchActivity(watcher) {
      // A function of its own per call, so the same listener watching twice is removed once per call.
      const call = () => watcher()
      watchers.add(call)
      return () => {
        watchers.delete(call)
      }
    },

    async ping() {},
  }
}

/** How many candidates match `query`: from the kept counts when they say, else by looking at each. */
function countMatches(m: StoredMigration, query: CandidateQuery, matches: (id: string) => unknown): number {
  const counted = totalFromCounts(query, m.order.length, m.counts, m.outcomes)
  if (counted !== undefined) return counted
  let total = 0
  for (const id of m.order) if (matches(id) !== false) total++
  return total
}

/** The index of the first entry whose id is greater than `after`. */
function firstAfter(entries: ActivityEntry[], after: number): number {
  let low = 0
  let high = entries.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (Number(entries[middle]!.id) <= after) low = middle + 1
    else high = middle
  }
  return low
}

/**
 * A candidate's own copy, field by field: lists of thousands of candidates are copied on
 * every read, and this is an order of magnitude cheaper than `structuredClone`.
 */
function copyCandidate(c: Candidate): Candidate {
  const copy: Candidate = { id: c.id }
  if (c.kind !== undefined) copy.kind = c.kind
  if (c.metadata) copy.metadata = { ...c.metadata }
  if (c.state) copy.state = { ...c.state }
  if (c.files) copy.files = c.files.map((group) => ({ ...group, files: group.files.map((file) => ({ ...file })) }))
  return copy
}

function clone<T>(value: T): T {
  return structuredClone(value)
}
