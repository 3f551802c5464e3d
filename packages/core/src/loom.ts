import { LoomError } from './errors'
import { httpDispatcher, httpDryRunner } from './http-worker'
import { joinRunId, parseRunId } from './ids'
import type { DryRunner, Engine, MigrationStore, MigrationSummary, RunRecord, StepDispatcher } from './ports'
import { createRunHost } from './run-host'
import {
  CandidateListSchema,
  CandidateQuerySchema,
  MigrationAnnouncementSchema,
  RegisterMigrationRequestSchema,
  SlugSchema,
  StepCompletedEventSchema,
  type Candidate,
  type CandidateQuery,
  type CandidateRun,
  type CandidateWithStatus,
  type DryRunResult,
  type LoomEvent,
  type MigrationAnnouncement,
  type RegisterMigrationRequest,
  type RegisteredMigration,
  type RunInfo,
  type RunStatusResponse,
  type StepCompletedEvent,
} from './schemas'
import { STATUS_RULES, candidateStatusOf, type StatusAction } from './status'
import { parse } from './validate'

/** A migration as an overview lists it: everything but the candidates and their runs. */
export type MigrationOverview = Omit<RegisteredMigration, 'candidates' | 'candidateRuns'>

/** A page of candidates and how many match the query in all. */
export interface CandidateSearchResult {
  candidates: CandidateWithStatus[]
  total: number
}

export interface HealthReport {
  status: 'ok'
}

/**
 * Everything Loom does, as one interface. `createLoom` implements it in-process and
 * `createClient` (`@loom/client`) over HTTP, with the same methods and the same
 * `LoomError` codes, so code written against `Loom` does not care which it holds.
 */
export interface Loom {
  /** Registers or updates a migration by id. Keeps `createdAt`, runs and cancelled attempts; replaces candidates when given. */
  announce(announcement: MigrationAnnouncement): Promise<RegisteredMigration>
  /** Registers a migration under a generated id. */
  register(request: RegisterMigrationRequest): Promise<RegisteredMigration>
  /** Every migration, oldest first; with `summary`, without candidates (counts are kept). */
  listMigrations(): Promise<RegisteredMigration[]>
  listMigrations(options: { summary: true }): Promise<MigrationOverview[]>
  listMigrations(options?: { summary?: boolean }): Promise<RegisteredMigration[] | MigrationOverview[]>
  getMigration(id: string): Promise<RegisteredMigration>
  /** Deletes a migration; `conflict` while any of its candidates is running. */
  deleteMigration(id: string): Promise<void>
  /** Replaces the candidate list; candidates with a queued, running or completed run are kept. */
  submitCandidates(migrationId: string, candidates: Candidate[]): Promise<void>
  /** Every candidate with its status, in submission order. */
  listCandidates(migrationId: string): Promise<CandidateWithStatus[]>
  /** Candidates filtered by status and text, paged, with the total that match. */
  searchCandidates(migrationId: string, query: CandidateQuery): Promise<CandidateSearchResult>
  /** `not_started → queued`; returns the run id. */
  queue(migrationId: string, candidateId: string): Promise<string>
  /** `queued → not_started`. */
  dequeue(runId: string): Promise<void>
  /** `queued → running` and starts the engine's run; if the engine refuses, the candidate stays queued. */
  execute(runId: string): Promise<string>
  /** `queued | running → not_started`, recording a cancelled attempt and stopping the engine's run. */
  cancel(runId: string): Promise<void>
  /** Reports a step's outcome (a worker, or an operator approving or rejecting a manual-review step). */
  complete(runId: string, event: StepCompletedEvent): Promise<void>
  /** Reports progress on a step without ending it (a pull request opened). */
  prOpened(runId: string, event: StepCompletedEvent): Promise<void>
  /** The run of a queued, running or completed candidate. */
  getRun(runId: string): Promise<RunInfo>
  /** The engine-level view of a run that has been executed (API 0.2's `/status`). */
  runStatus(runId: string): Promise<RunStatusResponse>
  /** Asks the worker for the file changes the run would make. */
  dryRun(migrationId: string, candidateId: string): Promise<DryRunResult>
  /** Calls `listener` for every change until the returned function is called. */
  subscribe(listener: (event: LoomEvent) => void): () => void
  /** Resolves when store and engine answer; otherwise `unavailable` naming the failing one. */
  health(): Promise<HealthReport>
}

export interface LoomDeps {
  store: MigrationStore
  engine: Engine
  /** How steps reach workers. Default: `httpDispatcher()`. */
  dispatcher?: StepDispatcher
  /** How dry runs reach workers. Default: `httpDryRunner()`. */
  dryRunner?: DryRunner
  /** Errors Loom handles but should not hide (a listener throwing, an engine failing to cancel). Default: console.error. */
  onError?: (error: unknown) => void
  /** The clock; tests replace it. */
  now?: () => Date
}

/** A `Loom` running in this process. */
export interface LoomInstance extends Loom {
  /** Resolves once the engine is attached (and, for the local engine, has resumed its runs). */
  readonly ready: Promise<void>
  /** Stops the engine's work in this process. The store is the caller's to close. */
  close(): Promise<void>
  /**
   * Hands subscribers a change made outside this instance: pass it as the event callback of
   * a run host this process runs elsewhere (`createLoomWorker({ onEvent: loom.publish })`).
   */
  publish(event: LoomEvent): void
}

/**
 * Builds Loom from a store and an engine (and, optionally, how to reach workers).
 *
 * @example
 * import { createLoom, memoryStore, localEngine } from '@loom/core'
 *
 * const loom = createLoom({ store: memoryStore(), engine: localEngine() })
 * await loom.announce({ id: 'app-chart', name: 'App chart', steps: [{ name: 'bump', workerApp: 'charts' }], workerUrl: 'http://localhost:4000' })
 * await loom.submitCandidates('app-chart', [{ id: 'billing-api' }])
 * const runId = await loom.queue('app-chart', 'billing-api')
 * await loom.execute(runId)
 */
export function createLoom(deps: LoomDeps): LoomInstance {
  const { store, engine } = deps
  const dispatcher = deps.dispatcher ?? httpDispatcher()
  const dryRunner = deps.dryRunner ?? httpDryRunner()
  const onError = deps.onError ?? ((error: unknown) => console.error('[loom]', error))
  const now = deps.now ?? (() => new Date())
  const at = () => now().toISOString()
  const listeners = new Set<(event: LoomEvent) => void>()

  const emit = (event: LoomEvent) => {
    for (const listener of listeners) {
      try {
        listener(event)
      } catch (error) {
        onError(error)
      }
    }
  }

  const ready = Promise.resolve(engine.attach?.(createRunHost({ store, dispatcher, emit, now })))
  ready.catch(onError)

  const requireMigration = async (id: string): Promise<MigrationSummary> => {
    parse(SlugSchema, id, 'migrationId')
    const migration = await store.getMigration(id)
    if (!migration) throw new LoomError('not_found', `migration ${id} not found`, { details: { migrationId: id } })
    return migration
  }

  /** Parses a run id from a path; an id that does not parse names no run, so it is `not_found`. */
  const runOf = (runId: string) => {
    try {
      return parseRunId(runId)
    } catch (error) {
      throw new LoomError('not_found', `run ${runId} not found: ${(error as Error).message}`, { details: { runId } })
    }
  }

  const notFound = async (migrationId: string, candidateId: string): Promise<never> => {
    await requireMigration(migrationId)
    throw new LoomError('not_found', `candidate ${candidateId} not found in migration ${migrationId}`, {
      details: { migrationId, candidateId },
    })
  }

  /** Applies one row of the status rules as a compare-and-set, turning a refusal into the contract's error. */
  const move = async (action: StatusAction, migrationId: string, candidateId: string, attempt?: number) => {
    const rule = STATUS_RULES[action]
    const result = await store.transition({
      migrationId,
      candidateId,
      from: rule.from,
      to: rule.to,
      at: at(),
      ...(attempt === undefined ? {} : { attempt }),
    })
    if (!result.ok) {
      if (result.reason === 'not_found') return notFound(migrationId, candidateId)
      throw new LoomError(
        'conflict',
        `cannot ${action} ${joinRunId(migrationId, candidateId)}: the candidate is ${result.status}` +
          `; ${action} is allowed from ${rule.from.join(' or ')}`,
        { details: { status: result.status } },
      )
    }
    const status = candidateStatusOf(result.run.state)
    emit({ type: 'run.status', runId: result.run.runId, migrationId, candidateId, status, previous: result.previous, at: at() })
    return result.run
  }

  const assemble = async (summary: MigrationSummary): Promise<RegisteredMigration> => {
    const page = await store.listCandidates(summary.id)
    if (!page) throw new LoomError('not_found', `migration ${summary.id} not found`)
    const candidateRuns: Record<string, CandidateRun> = {}
    const candidates: Candidate[] = []
    for (const { status, runId: _runId, ...candidate } of page.candidates) {
      candidates.push(candidate)
      if (status !== 'not_started') candidateRuns[candidate.id] = { status }
    }
    return { ...overview(summary), candidates, candidateRuns }
  }

  const upsert = async (definition: Omit<MigrationAnnouncement, 'candidates'>, candidates: Candidate[] | undefined) => {
    const { id, name, description, steps, workerUrl } = definition
    await store.upsertMigration(
      { id, name, steps, ...(description === undefined ? {} : { description }), ...(workerUrl === undefined ? {} : { workerUrl }) },
      candidates,
    )
    emit({ type: 'migration.updated', migrationId: id, at: at() })
    if (candidates) emit({ type: 'candidates.submitted', migrationId: id, count: candidates.length, at: at() })
    return assemble(await requireMigration(id))
  }

  const report = async (runId: string, input: StepCompletedEvent, done: boolean) => {
    const { migrationId, candidateId } = runOf(runId)
    const event = parse(StepCompletedEventSchema, input, '')
    const migration = await requireMigration(migrationId)
    if (event.candidate.id !== candidateId) {
      throw new LoomError('invalid', `candidate.id: "${event.candidate.id}" is not the candidate of run ${runId}`, {
        details: { field: 'candidate.id' },
      })
    }
    if (!migration.steps.some((s) => s.name === event.stepName)) {
      throw new LoomError('invalid', `stepName: migration ${migrationId} has no step "${event.stepName}"`, {
        details: { field: 'stepName' },
      })
    }
    if (!done) event.metadata = { phase: 'open', ...event.metadata }
    const recorded = await store.recordStep({ migrationId, candidateId, result: event, done, at: at() })
    switch (recorded.outcome) {
      case 'not_found':
        return notFound(migrationId, candidateId)
      case 'not_running':
        throw new LoomError('conflict', `run ${runId} is not running: the candidate is ${recorded.status}`, {
          details: { status: recorded.status },
        })
      case 'step_ended':
        throw new LoomError('conflict', `step "${event.stepName}" of run ${runId} has already ended`, {
          details: { status: 'running' },
        })
      case 'recorded':
        emit({ type: 'step.reported', runId, migrationId, candidateId, result: event, done, at: at() })
    }
    // Delivered on duplicates too: delivery is idempotent, and a retry heals a delivery that failed.
    try {
      await engine.deliver(runId, {
        stepName: event.stepName,
        success: event.success,
        done,
        ...(event.metadata ? { metadata: event.metadata } : {}),
      })
    } catch (error) {
      if (LoomError.is(error)) throw error
      throw new LoomError('unavailable', `engine: could not deliver the event of run ${runId}: ${(error as Error).message}`, { cause: error })
    }
  }

  const runRecord = async (runId: string): Promise<{ migrationId: string; candidate: Candidate; run: RunRecord | undefined }> => {
    const { migrationId, candidateId } = runOf(runId)
    const found = await store.getCandidate(migrationId, candidateId)
    if (!found) return notFound(migrationId, candidateId)
    return { migrationId, candidate: found.candidate, run: found.run }
  }

  async function listMigrations(): Promise<RegisteredMigration[]>
  async function listMigrations(options: { summary: true }): Promise<MigrationOverview[]>
  async function listMigrations(options?: { summary?: boolean }): Promise<RegisteredMigration[] | MigrationOverview[]>
  async function listMigrations(options: { summary?: boolean } = {}) {
    const summaries = await store.listMigrations()
    if (options.summary) return summaries.map(overview)
    return Promise.all(summaries.map(assemble))
  }

  const loom: LoomInstance = {
    ready,

    publish: emit,

    async close() {
      await engine.close?.()
    },

    async announce(input) {
      const announcement = parse(MigrationAnnouncementSchema, input, '')
      const { candidates, ...definition } = announcement
      return upsert(definition, candidates)
    },

    async register(input) {
      const request = parse(RegisterMigrationRequestSchema, input, '')
      const { candidates, ...definition } = request
      return upsert({ ...definition, id: generateId(request.name) }, candidates)
    },

    listMigrations,

    async getMigration(id) {
      return assemble(await requireMigration(id))
    },

    async deleteMigration(id) {
      parse(SlugSchema, id, 'migrationId')
      const outcome = await store.deleteMigration(id)
      if (outcome === 'not_found') throw new LoomError('not_found', `migration ${id} not found`)
      if (outcome === 'running') {
        throw new LoomError('conflict', `migration ${id} has running candidates; cancel them first`, { details: { status: 'running' } })
      }
      emit({ type: 'migration.deleted', migrationId: id, at: at() })
    },

    async submitCandidates(migrationId, input) {
      parse(SlugSchema, migrationId, 'migrationId')
      const candidates = parse(CandidateListSchema, input, 'candidates')
      if (!(await store.replaceCandidates(migrationId, candidates))) await requireMigration(migrationId)
      emit({ type: 'candidates.submitted', migrationId, count: candidates.length, at: at() })
    },

    async listCandidates(migrationId) {
      return (await loom.searchCandidates(migrationId, {})).candidates
    },

    async searchCandidates(migrationId, input) {
      parse(SlugSchema, migrationId, 'migrationId')
      const query = parse(CandidateQuerySchema, input, 'query')
      const page = await store.listCandidates(migrationId, query)
      if (!page) throw new LoomError('not_found', `migration ${migrationId} not found`)
      return page
    },

    async queue(migrationId, candidateId) {
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      return (await move('queue', migrationId, candidateId)).runId
    },

    async dequeue(runId) {
      const { migrationId, candidateId } = runOf(runId)
      await move('dequeue', migrationId, candidateId)
    },

    async execute(runId) {
      const { migrationId, candidateId } = runOf(runId)
      const run = await move('execute', migrationId, candidateId)
      const start = { runId, migrationId, candidateId, attempt: run.attempt }
      try {
        await engine.start(start)
      } catch (error) {
        // The engine refused: put the candidate back to queued (unless a cancel took it meanwhile).
        await move('unexecute', migrationId, candidateId, run.attempt).catch(() => {})
        if (LoomError.is(error)) throw error
        throw new LoomError('unavailable', `engine: could not start run ${runId}: ${(error as Error).message}`, { cause: error })
      }
      // A cancel that won between our transition and the start found no run to stop: stop it now.
      const after = await store.getCandidate(migrationId, candidateId)
      if (after?.run?.attempt !== run.attempt || after.run.state !== 'running') {
        await engine.cancel(runId).catch(onError)
      }
      return runId
    },

    async cancel(runId) {
      const { migrationId, candidateId } = runOf(runId)
      const run = await move('cancel', migrationId, candidateId)
      // The store is the truth from here: a run the engine fails to stop finds itself stale at its next step.
      await engine.cancel(run.runId).catch(onError)
    },

    complete: (runId, event) => report(runId, event, true),

    prOpened: (runId, event) => report(runId, event, false),

    async getRun(runId) {
      const { migrationId, candidate, run } = await runRecord(runId)
      const status = candidateStatusOf(run?.state)
      if (!run || status === 'not_started') {
        throw new LoomError('not_found', `run ${runId} not found: the candidate is not_started`, { details: { status } })
      }
      return { runId, migrationId, candidate, status, steps: run.steps.map((s) => s.result) }
    },

    async runStatus(runId) {
      const { migrationId, run } = await runRecord(runId)
      const runtime = run?.startedAt === undefined ? undefined : RUNTIME_STATUS[run.state]
      if (!run || !runtime) throw new LoomError('not_found', `run ${runId} has not been executed`)
      return {
        instanceId: runId,
        runtimeStatus: runtime,
        result: {
          migrationId,
          status: runtime === 'RUNNING' ? 'running' : runtime === 'COMPLETED' ? 'completed' : 'failed',
          results: run.steps.map((s) => s.result),
        },
      }
    },

    async dryRun(migrationId, candidateId) {
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      const migration = await requireMigration(migrationId)
      const found = await store.getCandidate(migrationId, candidateId)
      if (!found) return notFound(migrationId, candidateId)
      const workerApps = [...new Set(migration.steps.map((s) => s.workerApp))]
      try {
        return await dryRunner.dryRun(
          migration.workerUrl ? { workerApps, workerUrl: migration.workerUrl } : { workerApps },
          { migrationId, candidate: found.candidate, steps: migration.steps },
        )
      } catch (error) {
        if (LoomError.is(error)) throw error
        throw new LoomError('unavailable', `dry run of ${joinRunId(migrationId, candidateId)} failed: ${(error as Error).message}`, { cause: error })
      }
    },

    subscribe(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },

    async health() {
      await check('store', () => store.ping())
      await check('engine', () => engine.health?.())
      return { status: 'ok' }
    },
  }
  return loom
}

const RUNTIME_STATUS: Partial<Record<RunRecord['state'], RunStatusResponse['runtimeStatus']>> = {
  running: 'RUNNING',
  completed: 'COMPLETED',
  failed: 'FAILED',
  cancelled: 'CANCELED',
}

function overview({ counts, cancelledAttempts, ...record }: MigrationSummary): MigrationOverview {
  return { ...record, counts, cancelledAttempts }
}

async function check(dependency: string, probe: () => Promise<unknown> | unknown): Promise<void> {
  try {
    await probe()
  } catch (error) {
    throw new LoomError('unavailable', `${dependency}: ${(error as Error).message}`, { cause: error, details: { dependency } })
  }
}

/** A slug from the migration's name plus a random suffix, for migrations registered without an id. */
function generateId(name: string): string {
  const base = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
  const suffix = crypto.randomUUID().slice(0, 8)
  return base ? `${base}-${suffix}` : `migration-${suffix}`
}

