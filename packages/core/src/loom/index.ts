/**
 * `createLoom`: the `Loom` interface in this process, put together from its parts over
 * shared dependencies — migrations and candidates (`migrations.ts`), runs and the reports
 * that move them (`runs.ts`), the API 0.2 response shapes (`shapes.ts`) and what they all
 * share (`context.ts`).
 */
import { type Actor, ActorSchema, authorize, SYSTEM_ACTOR } from '../actors'
import { LoomError } from '../errors'
import { type Limits, resolveLimits } from '../limits'
import { httpDispatcher, httpDryRunner } from '../http-worker'
import type { DryRunner, Engine, MigrationStore, StepDispatcher } from '../ports'
import { createRunHost } from '../run-host'
import type {
  ActivityPage,
  ActivityQueryInput,
  CancelOptions,
  RunHistory,
  Candidate,
  CandidateQuery,
  CandidateWithStatus,
  Discovery,
  DryRunResult,
  ExecuteOptions,
  LoomEvent,
  MigrationAnnouncement,
  PatchCandidatesRequest,
  RegisteredMigration,
  RegisterMigrationRequest,
  RunInfo,
  RunStatusResponse,
  StepCompletedEvent,
} from '../schemas'
import { limitedSchemas, SlugSchema } from '../schemas'
import { parse } from '../validate'
import { digest } from '../digest'
import { type WorkerUrlPolicy, workerUrlPolicy } from '../worker-urls'
import { loomContext } from './context'
import { reconciler } from './reconciler'
import { MAX_STEP_TIMEOUT_MS, parseDuration } from '../steps'
import { activityMethods } from './activity'
import { activityFeed, type SubscribeOptions } from './events'
import { migrationMethods } from './migrations'
import { runMethods } from './runs'
import type { MigrationOverview } from './shapes'

export type { MigrationOverview } from './shapes'

/** The deadline of a step without `config.timeout`: a day. */
const DEFAULT_STEP_TIMEOUT_MS = 24 * 3600_000

/** How long an uncommitted discovery lasts after its last part: an hour. */
const DEFAULT_DISCOVERY_TTL_MS = 3600_000

/** A page of candidates and how many match the query in all. */
export interface CandidateSearchResult {
  candidates: CandidateWithStatus[]
  total: number
}

/** How `createLoom` watches over the runs: leases, catch-up of undelivered reports, step deadlines. */
export interface ReconcileOptions {
  /** How often the reconciler looks at the running runs. Default 5 s. */
  intervalMs?: number
  /** How long this process's lease lasts after each renewal; its runs are taken over by others once it lapses. Default 20 s. */
  leaseMs?: number
  /** How long a run may go without moving before this process checks that its engine still drives it. Default 60 s. */
  stallMs?: number
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
  /**
   * Changes part of the candidate list: `upsert` replaces the candidates it names where they
   * stand (keeping their place and run) and appends the new ones, in order; `remove` drops the
   * candidates it names, but not one whose run is queued, running or completed (kept, as
   * `submitCandidates` keeps it); ids the migration does not have are ignored. An id in both is `invalid`.
   */
  patchCandidates(migrationId: string, patch: PatchCandidatesRequest): Promise<void>
  /**
   * Opens a discovery: a new candidate list sent in parts (`addToDiscovery`), then swapped in
   * whole (`commitDiscovery`), for lists too large for one request. It expires unless a part or
   * the commit comes within `discoveryTtl` (default an hour) of the last.
   */
  openDiscovery(migrationId: string): Promise<Discovery>
  /**
   * Adds a part to a discovery: the candidates are listed after those of earlier parts, in
   * order. A candidate an earlier part sent is `invalid`, naming it, and the part adds nothing.
   * `not_found` for a discovery committed, expired, never opened, or of another migration.
   */
  addToDiscovery(migrationId: string, discoveryId: string, candidates: Candidate[]): Promise<void>
  /** Replaces the candidate list with the discovery's parts, atomically, as `submitCandidates` would; the discovery is then gone. */
  commitDiscovery(migrationId: string, discoveryId: string): Promise<void>
  /** Every candidate with its status, in submission order. */
  listCandidates(migrationId: string): Promise<CandidateWithStatus[]>
  /** Candidates filtered by status and text, paged, with the total that match. */
  searchCandidates(migrationId: string, query: CandidateQuery): Promise<CandidateSearchResult>
  /** One candidate with its status (and run id unless `not_started`). */
  getCandidate(migrationId: string, candidateId: string): Promise<CandidateWithStatus>
  /** `not_started → queued`; returns the run id. */
  queue(migrationId: string, candidateId: string): Promise<string>
  /** `queued → not_started`. */
  dequeue(runId: string): Promise<void>
  /**
   * `queued → running` and starts the engine's run; if the engine refuses, the candidate stays
   * queued. With `resume`, the steps that succeeded in the candidate's previous attempt are
   * carried over and the run starts at the step after them.
   */
  execute(runId: string, options?: ExecuteOptions): Promise<string>
  /** `queued | running → not_started`, recording a cancelled attempt (who, and `reason` when given) and stopping the engine's run. */
  cancel(runId: string, options?: CancelOptions): Promise<void>
  /** Reports a step's outcome (a worker, or an operator approving or rejecting a manual-review step). */
  complete(runId: string, event: StepCompletedEvent): Promise<void>
  /** Reports progress on a step without ending it (a pull request opened). */
  prOpened(runId: string, event: StepCompletedEvent): Promise<void>
  /** The run of a queued, running or completed candidate. */
  getRun(runId: string): Promise<RunInfo>
  /** The engine-level view of a run that has been executed (API 0.2's `/status`). */
  runStatus(runId: string): Promise<RunStatusResponse>
  /** The migration's activity log, oldest first, a page after `after`; `next` continues it. */
  activity(migrationId: string, query?: ActivityQueryInput): Promise<ActivityPage>
  /** Every attempt of the run's candidate, oldest first: who queued, executed and ended it, when, and each step. */
  history(runId: string): Promise<RunHistory>
  /** Asks the worker for the file changes the run would make. */
  dryRun(migrationId: string, candidateId: string): Promise<DryRunResult>
  /**
   * Calls `listener` for every change, made by this process or any other sharing the store,
   * in the order of the activity log, until the returned function is called. With `after`
   * (the id of an event seen before), the changes since then come first; a listener that
   * returns a promise (a stream's write) is waited for between their pages, so a client far
   * behind is not handed more than it can take.
   */
  subscribe(listener: (event: LoomEvent) => unknown, options?: SubscribeOptions): () => void
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
  /**
   * The deadline of a step without `config.timeout`, written the same way ("90s", "30m", "2h").
   * A worker step with no final report by then (counted from its begin, dispatch retries
   * included) fails. Default "24h".
   */
  stepTimeout?: string
  /**
   * This process's name as the owner of the runs it executes. A process restarted under the
   * same name takes its running runs back at once; under another name (the default is a new
   * random one each start), they are taken over once its lease lapses. Give each process of
   * a deployment its own stable name (a pod name, say).
   */
  instanceId?: string
  /** The reconciler's timings, or false to run without one (runs then depend on every delivery and process staying up). */
  reconcile?: ReconcileOptions | false
  /**
   * The worker URLs this deployment calls: origins (`https://charts.internal`) or prefixes
   * (`https://workers.internal/loom/`), as a list or comma-separated (`LOOM_WORKER_URLS`).
   * When set, an announce or registration with any other `workerUrl` is refused (`invalid`,
   * naming `workerUrl`), and no step or dry run is sent to one stored before. Default: any
   * http(s) URL, which lets whoever may announce point Loom at any host it can reach.
   */
  allowedWorkerUrls?: readonly string[] | string
  /** How much one request may ask: steps, candidates, map keys and values, files, JSON depth. Default {@link DEFAULT_LIMITS}. */
  limits?: Partial<Limits>
  /**
   * How long the activity log keeps an entry ("30d", "2160h"): older entries are deleted, in
   * batches, by every process's reconciler about once an hour. Default: kept for ever. The log
   * is the run history, the events a reconnecting client replays and the burndown's source, so
   * keep it at least as long as any of those must reach back.
   */
  activityRetention?: string
  /**
   * How long an uncommitted discovery lasts after it was opened or given its last part ("1h",
   * "30m"); the reconciler deletes expired ones with what they staged. Default "1h".
   */
  discoveryTtl?: string
}

/** A `Loom` running in this process. Its own methods act as Loom itself (`system`), with every right. */
export interface LoomInstance extends Loom {
  /**
   * This Loom acting for `actor`: every call is held to the actor's role (a worker announces,
   * submits candidates and reports steps on its own migrations; an operator does everything)
   * and refused with `forbidden` otherwise. What a transport hands each authenticated caller.
   *
   * @example
   * await loom.as({ kind: 'worker', name: 'charts' }).queue('app-chart', 'billing-api') // LoomError forbidden
   */
  as(actor: Actor): Loom
  /** The limits this instance holds requests to. */
  readonly limits: Readonly<Limits>
  /**
   * A version of what the reads of one migration show (its definition, candidates, statuses,
   * last attempts, cancelled attempts), or, without `migrationId`, of every migration at once:
   * a short string that changes with every such change, made by this process or any other
   * sharing the store, and with nothing else. What `@loom/hono` makes `ETag`s of. Reads no
   * candidate. `not_found` for an unknown migration.
   */
  versionOf(migrationId?: string): Promise<string>
  /**
   * Resolves once the engine is attached and the reconciler's first pass is done: the runs this
   * process owns (same `instanceId`) are resumed, and those of lapsed owners taken over.
   */
  readonly ready: Promise<void>
  /** Stops the engine's work in this process. The store is the caller's to close. */
  close(): Promise<void>
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
  const limits = resolveLimits(deps.limits)
  const urls = workerUrlPolicy(deps.allowedWorkerUrls)
  const ctx = loomContext({
    store: deps.store,
    engine: deps.engine,
    dispatcher: allowedOnly(deps.dispatcher ?? httpDispatcher(), urls),
    dryRunner: allowedOnlyDryRuns(deps.dryRunner ?? httpDryRunner(), urls),
    onError: deps.onError ?? ((error: unknown) => console.error('[loom]', error)),
    now: deps.now ?? (() => new Date()),
    instanceId: deps.instanceId ?? `loom-${crypto.randomUUID()}`,
    stepTimeoutMs: stepTimeoutOf(deps.stepTimeout),
    activityRetentionMs: retentionOf(deps.activityRetention),
    discoveryTtlMs: discoveryTtlOf(deps.discoveryTtl),
    limits,
    schemas: limitedSchemas(limits),
    checkWorkerUrl: (url) => urls.check(url),
  })
  const { store, engine, dispatcher, now, onError } = ctx
  const host = createRunHost({ store, dispatcher, now })
  const feed = activityFeed(store, onError)
  const watch =
    deps.reconcile === false
      ? undefined
      : reconciler(ctx, host, {
          intervalMs: deps.reconcile?.intervalMs ?? 5_000,
          leaseMs: deps.reconcile?.leaseMs ?? 20_000,
          stallMs: deps.reconcile?.stallMs ?? 60_000,
        })

  const ready = Promise.resolve(engine.attach?.(host)).then(() => watch?.start())
  ready.catch(onError)

  const subscribe = feed.subscribe
  const health = async (): Promise<HealthReport> => {
    await check('store', () => store.ping())
    await check('engine', () => engine.health?.())
    return { status: 'ok' }
  }
  /**
   * The Loom of each actor met lately: assembling every method for each request costs more than
   * answering a conditional GET, and a deployment's callers are a handful of names.
   */
  const actors = new Map<string, Loom>()
  const actingAs = (input: Actor): Loom => {
    const key = typeof input?.kind === 'string' && typeof input.name === 'string' ? `${input.kind}\u0000${input.name}` : undefined
    const known = key === undefined ? undefined : actors.get(key)
    if (known) return known
    const acting = assemble(input)
    if (key !== undefined) {
      if (actors.size >= 256) actors.delete(actors.keys().next().value!)
      actors.set(key, acting)
    }
    return acting
  }
  const assemble = (input: Actor): Loom => {
    // Actors come from tokens, hooks and messages: one of another kind, or blank, acts for no one.
    const actor = parse(ActorSchema, input, 'actor')
    const methods: Loom = { ...migrationMethods(ctx, actor), ...runMethods(ctx, actor), ...activityMethods(ctx), subscribe, health }
    if (actor.kind === 'operator' || actor.kind === 'system') return methods
    // The role rule, applied before any work: a call the actor may not make changes nothing.
    const held = {} as Record<string, unknown>
    for (const [name, method] of Object.entries(methods) as Array<[string, (...args: unknown[]) => unknown]>) {
      held[name] =
        name === 'subscribe'
          ? (...args: unknown[]) => {
              authorize(actor, name)
              return method(...args)
            }
          : async (...args: unknown[]) => {
              authorize(actor, name)
              return method(...args)
            }
    }
    return held as unknown as Loom
  }

  const versionOf = async (migrationId?: string): Promise<string> => {
    if (migrationId === undefined) {
      let catalog = ''
      for (const [id, version] of await store.versions()) catalog += `${id}\u0000${version}\u0000`
      return digest(catalog)
    }
    parse(SlugSchema, migrationId, 'migrationId')
    const version = (await store.versions([migrationId])).get(migrationId)
    if (version === undefined) throw new LoomError('not_found', `migration ${migrationId} not found`, { details: { migrationId } })
    return version
  }

  return {
    ...actingAs(SYSTEM_ACTOR),
    as: actingAs,
    limits,
    versionOf,
    ready,
    async close() {
      await ready.catch(() => {})
      await watch?.stop()
      await engine.close?.()
      // Hands this process's runs over at once: another process claims them at its next tick.
      if (watch) await store.renewLease(ctx.instanceId, new Date(now().getTime() - 1).toISOString()).catch(onError)
    },
  }
}

/** `dispatcher`, refusing a step whose stored `workerUrl` is no longer allowed (the step then fails, naming why). */
function allowedOnly(dispatcher: StepDispatcher, urls: WorkerUrlPolicy): StepDispatcher {
  if (urls.allowed.length === 0) return dispatcher
  return {
    async dispatch(target, request) {
      if (target.workerUrl !== undefined) urls.check(target.workerUrl)
      return dispatcher.dispatch(target, request)
    },
  }
}

/** `dryRunner`, refusing a dry run whose stored `workerUrl` is no longer allowed. */
function allowedOnlyDryRuns(dryRunner: DryRunner, urls: WorkerUrlPolicy): DryRunner {
  if (urls.allowed.length === 0) return dryRunner
  return {
    async dryRun(target, request) {
      if (target.workerUrl !== undefined) urls.check(target.workerUrl)
      return dryRunner.dryRun(target, request)
    },
  }
}

function stepTimeoutOf(text: string | undefined): number {
  if (text === undefined) return DEFAULT_STEP_TIMEOUT_MS
  const ms = parseDuration(text)
  if (ms === undefined || ms > MAX_STEP_TIMEOUT_MS) {
    throw new LoomError('invalid', `stepTimeout: "${text}" is not a deadline of at most 90 days ("90s", "30m", "2h")`, {
      details: { field: 'stepTimeout' },
    })
  }
  return ms
}

function retentionOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const ms = parseDuration(text)
  if (ms === undefined) {
    throw new LoomError('invalid', `activityRetention: "${text}" is not a duration ("30d", "2160h")`, {
      details: { field: 'activityRetention' },
    })
  }
  return ms
}

function discoveryTtlOf(text: string | undefined): number {
  if (text === undefined) return DEFAULT_DISCOVERY_TTL_MS
  const ms = parseDuration(text)
  if (ms === undefined) {
    throw new LoomError('invalid', `discoveryTtl: "${text}" is not a duration ("1h", "30m")`, { details: { field: 'discoveryTtl' } })
  }
  return ms
}

async function check(dependency: string, probe: () => Promise<unknown> | unknown): Promise<void> {
  try {
    await probe()
  } catch (error) {
    throw new LoomError('unavailable', `${dependency}: ${(error as Error).message}`, { cause: error, details: { dependency } })
  }
}
