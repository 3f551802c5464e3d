import type {
  ActivityDraft,
  ActivityEntry,
  CandidatePage,
  DiscoveryRecord,
  MigrationDefinition,
  MigrationRecord,
  MigrationStore,
  MigrationSummary,
  RecordStepOutcome,
  RunRecord,
  RunState,
  TransitionResult,
} from './ports'
import type {
  CancelledAttempt,
  Candidate,
  CandidateQuery,
  CandidateStatus,
  CandidateWithStatus,
  LastOutcome,
  StatusCounts,
} from './schemas'
import { candidateStatusOf, decideStepProgress, decideStepReport, decideTransition, emptyCounts, standingOf } from './rules'
import { matchesQuery, totalFromCounts } from './candidate-query'

interface StoredMigration {
  record: MigrationRecord
  /** Insertion-ordered: submission order is the listing order. */
  candidates: Map<string, Candidate>
  /** The candidate ids in listing order, and each one's index in it: where a cursor resumes. */
  order: string[]
  positions: Map<string, number>
  /**
   * The positions of the candidates of each status, and of each last outcome, ascending: a
   * filtered page is read from its own list from the cursor on, so it costs the page, not the
   * migration. Kept with the counts.
   */
  standings: Map<CandidateStatus | LastOutcome, number[]>
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
  /**
   * Versions start at a random place, so that a store made again (a restarted process) does not
   * hand out the versions, and so the ETags, an earlier one did for other contents.
   */
  let versions = Math.floor(Math.random() * 2 ** 40)
  /** Each process's lease: until when it is alive. */
  const leases = new Map<string, string>()
  /** The open discoveries by id, each with the migration it was opened on: one deleted since (even if made again) has none. */
  const discoveries = new Map<string, StagedDiscovery>()
  const openDiscoveryOf = (migrationId: string, discoveryId: string, at: string) => {
    const d = discoveries.get(discoveryId)
    if (!d || d.record.migrationId !== migrationId || migrations.get(migrationId) !== d.migration) return undefined
    return Date.parse(d.record.expiresAt) > Date.parse(at) ? d : undefined
  }
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
    ...copyRecord(m.record),
    counts: { ...m.counts },
    cancelledAttempts: m.cancelledAttempts.map((a) => (a.cancelledBy ? { ...a, cancelledBy: { ...a.cancelledBy } } : { ...a })),
    version: String(m.version),
  })

  /** Adds (`sign` 1) or takes away (-1) the candidate `id`, with this run, from the kept counts and standing lists. */
  const tally = (m: StoredMigration, id: string, run: RunRecord | undefined, sign: 1 | -1) => {
    const { status, outcome } = standingOf(run)
    const position = m.positions.get(id)!
    m.counts[status] += sign
    keep(m.standings, status, position, sign)
    if (outcome) {
      m.outcomes[outcome] += sign
      if (outcome === 'failed') m.counts.failed += sign
      keep(m.standings, outcome, position, sign)
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
    m.standings = new Map()
    // In listing order, so that every standing list is appended to in ascending order.
    for (const id of m.order) tally(m, id, m.runs.get(id), 1)
  }

  return {
    async upsertMigration(definition: MigrationDefinition, candidates?: Candidate[], claimant?: string, activity?: ActivityDraft) {
      const existing = migrations.get(definition.id)
      const owner = existing?.record.owner ?? claimant
      if (existing && claimant !== undefined && owner !== claimant) return copyRecord(existing.record)
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
        standings: new Map(),
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
      return copyRecord(record)
    },

    async getMigration(id) {
      const m = migrations.get(id)
      return m && summary(m)
    },

    async getMigrationRecord(id) {
      const m = migrations.get(id)
      return m && copyRecord(m.record)
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
      const cursor = query.after === undefined ? undefined : m.positions.get(query.after)
      if (query.after !== undefined && cursor === undefined) return { candidates: [], total: countMatches(m, query, matches) }
      // The positions a match can be at: a standing list when a filter names one, else every one.
      const within = query.lastOutcome ?? query.status
      const positions = within === undefined ? undefined : (m.standings.get(within) ?? [])
      const size = positions?.length ?? m.order.length
      const limit = query.limit ?? Number.POSITIVE_INFINITY
      const candidates: CandidatePage['candidates'] = []
      // Without a search, every position of that list matches (or none, for a status and an
      // outcome that exclude each other), so an offset is a jump; a search walks and skips.
      const walks = Boolean(query.q)
      if (!walks && query.lastOutcome && query.status && query.status !== 'not_started') return { candidates, total: 0 }
      let skip = walks && cursor === undefined ? (query.offset ?? 0) : 0
      let index = cursor !== undefined ? firstAbove(positions, cursor, size) : walks ? 0 : (query.offset ?? 0)
      for (; index < size && candidates.length < limit; index++) {
        const id = m.order[positions ? positions[index]! : index]!
        const run = matches(id)
        if (run === false) continue
        if (skip > 0) {
          skip--
          continue
        }
        // The copy is the listed candidate: its status and run id go on it, no second object.
        const listed = copyCandidate(m.candidates.get(id)!) as CandidateWithStatus
        listed.status = candidateStatusOf(run?.state)
        if (listed.status !== 'not_started') listed.runId = run!.runId
        else if (run?.lastAttempt) listed.lastAttempt = { ...run.lastAttempt, by: { ...run.lastAttempt.by } }
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
      tally(m, request.candidateId, previous, -1)
      m.runs.set(request.candidateId, run)
      tally(m, request.candidateId, run, 1)
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

    async patchCandidates(migrationId, patch, activity) {
      const m = migrations.get(migrationId)
      if (!m) return false
      const dropped = new Set(
        patch.remove.filter((id) => m.candidates.has(id) && candidateStatusOf(m.runs.get(id)?.state) === 'not_started'),
      )
      if (dropped.size === 0) {
        // In place: a candidate it has keeps its position and standing; a new one is appended.
        for (const c of patch.upsert) {
          const known = m.candidates.has(c.id)
          m.candidates.set(c.id, copyCandidate(c))
          if (known) continue
          m.positions.set(c.id, m.order.length)
          m.order.push(c.id)
          tally(m, c.id, undefined, 1)
        }
      } else {
        // Positions after a dropped candidate move: the list is laid out again, as a replace would.
        const upserts = new Map(patch.upsert.map((c) => [c.id, c]))
        const next: Candidate[] = []
        for (const id of m.order) if (!dropped.has(id)) next.push(upserts.get(id) ?? m.candidates.get(id)!)
        for (const c of patch.upsert) if (!m.candidates.has(c.id)) next.push(c)
        replace(m, next)
      }
      m.version = ++versions
      if (activity) write(activity)
      return true
    },

    async openDiscovery(discovery) {
      const m = migrations.get(discovery.migrationId)
      if (!m) return false
      discoveries.set(discovery.id, { record: { ...discovery }, migration: m, candidates: [], ids: new Set() })
      return true
    },

    async stageCandidates({ migrationId, discoveryId, candidates, at, expiresAt, limit }) {
      const d = openDiscoveryOf(migrationId, discoveryId, at)
      if (!d) return { outcome: 'not_found' }
      const again = candidates.find((c) => d.ids.has(c.id))
      if (again) return { outcome: 'duplicate', candidateId: again.id }
      if (d.candidates.length + candidates.length > limit) return { outcome: 'too_many', total: d.candidates.length }
      for (const c of candidates) {
        d.candidates.push(copyCandidate(c))
        d.ids.add(c.id)
      }
      d.record.expiresAt = expiresAt
      return { outcome: 'staged', total: d.candidates.length }
    },

    async commitDiscovery(migrationId, discoveryId, at, activity) {
      const d = openDiscoveryOf(migrationId, discoveryId, at)
      if (!d) return 'not_found'
      discoveries.delete(discoveryId)
      replace(d.migration, d.candidates)
      d.migration.version = ++versions
      if (activity) write({ ...activity, detail: { ...activity.detail, count: d.candidates.length } })
      return 'committed'
    },

    async pruneDiscoveries(before, limit) {
      const cutoff = Date.parse(before)
      let count = 0
      for (const [id, d] of discoveries) {
        if (count >= limit) break
        if (Date.parse(d.record.expiresAt) >= cutoff && migrations.get(d.record.migrationId) === d.migration) continue
        discoveries.delete(id)
        count++
      }
      return count
    },
  }
}

/** A discovery and the candidates staged into it, in the order staged. */
interface StagedDiscovery {
  record: DiscoveryRecord
  migration: StoredMigration
  candidates: Candidate[]
  ids: Set<string>
}

/** How many candidates match `query`: from the kept counts when they say, else by looking at each. */
function countMatches(m: StoredMigration, query: CandidateQuery, matches: (id: string) => unknown): number {
  const counted = totalFromCounts(query, m.order.length, m.counts, m.outcomes)
  if (counted !== undefined) return counted
  let total = 0
  for (const id of m.order) if (matches(id) !== false) total++
  return total
}

/** Adds `position` to (`sign` 1) or takes it from (-1) the ascending list of `key`. */
function keep<K>(lists: Map<K, number[]>, key: K, position: number, sign: 1 | -1) {
  let list = lists.get(key)
  if (!list) lists.set(key, (list = []))
  const at = firstAbove(list, position - 1, list.length)
  if (sign === 1) list.splice(at, 0, position)
  else if (list[at] === position) list.splice(at, 1)
}

/** The index of the first of `positions` (ascending; all of 0…size-1 when undefined) greater than `position`. */
function firstAbove(positions: number[] | undefined, position: number, size: number): number {
  if (!positions) return Math.min(position + 1, size)
  let low = 0
  let high = positions.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (positions[middle]! <= position) low = middle + 1
    else high = middle
  }
  return low
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

/** A migration record's own copy, field by field: overviews copy every migration on every read. */
function copyRecord(r: MigrationRecord): MigrationRecord {
  const copy: MigrationRecord = {
    ...r,
    steps: r.steps.map((step) => {
      const s = { ...step }
      if (step.config) s.config = { ...step.config }
      if (step.files) s.files = [...step.files]
      return s
    }),
  }
  return copy
}

function clone<T>(value: T): T {
  return structuredClone(value)
}
