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
import type { CancelledAttempt, Candidate, CandidateQuery } from './schemas'
import { candidateStatusOf, decideStepProgress, decideStepReport, decideTransition, emptyCounts } from './rules'
import { candidateWithStatus } from './loom/shapes'
import { matchesQuery } from './candidate-query'

interface StoredMigration {
  record: MigrationRecord
  /** Insertion-ordered: submission order is the listing order. */
  candidates: Map<string, Candidate>
  runs: Map<string, RunRecord>
  cancelledAttempts: CancelledAttempt[]
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

  const summary = (m: StoredMigration): MigrationSummary => {
    const counts = emptyCounts()
    for (const id of m.candidates.keys()) {
      const run = m.runs.get(id)
      counts[candidateStatusOf(run?.state)]++
      if (run?.lastAttempt?.outcome === 'failed') counts.failed++
    }
    return { ...clone(m.record), counts, cancelledAttempts: clone(m.cancelledAttempts) }
  }

  const replace = (m: StoredMigration, candidates: Candidate[]) => {
    const next = new Map<string, Candidate>()
    for (const c of candidates) next.set(c.id, copyCandidate(c))
    for (const [id, c] of m.candidates) {
      if (!next.has(id) && candidateStatusOf(m.runs.get(id)?.state) !== 'not_started') next.set(id, c)
    }
    for (const id of m.runs.keys()) if (!next.has(id)) m.runs.delete(id)
    m.candidates = next
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
        runs: new Map(),
        cancelledAttempts: [],
      }
      m.record = record
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
      if (activity) write(activity)
      return true
    },

    async listCandidates(migrationId, query: CandidateQuery = {}): Promise<CandidatePage | undefined> {
      const m = migrations.get(migrationId)
      if (!m) return undefined
      const matching: Array<{ candidate: Candidate; run: RunRecord | undefined }> = []
      for (const candidate of m.candidates.values()) {
        const run = m.runs.get(candidate.id)
        if (matchesQuery(candidate, candidateStatusOf(run?.state), query, run?.lastAttempt?.outcome)) matching.push({ candidate, run })
      }
      const offset = query.offset ?? 0
      const page = matching.slice(offset, query.limit === undefined ? undefined : offset + query.limit)
      return {
        candidates: page.map(({ candidate, run }) => {
          const listed = candidateWithStatus(copyCandidate(candidate), run)
          if (listed.lastAttempt) listed.lastAttempt = clone(listed.lastAttempt)
          return listed
        }),
        total: matching.length,
      }
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
      const decision = decideTransition(m.runs.get(request.candidateId), request)
      if (!decision.ok) return decision
      const run: RunRecord = { ...structuredClone(decision.next), attempt: decision.attempt === 'new' ? ++attempts : decision.attempt }
      m.runs.set(request.candidateId, run)
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
