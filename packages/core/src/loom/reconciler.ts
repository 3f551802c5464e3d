/**
 * The reconciler: what keeps runs moving when a delivery, a process or a dependency failed.
 * One runs in every `createLoom` process; they need no leader. Each tick it
 *
 * 1. renews this process's lease, and claims (compare-and-set, in the store) the running runs
 *    of processes whose lease lapsed, asking the engine to resume them;
 * 2. reads the running runs once, and for each: re-delivers a step outcome that is stored but
 *    the run has not moved on from (the engine was down when it came, or it reached another
 *    process); fails a worker step in flight whose deadline passed (it counts from the step's
 *    begin, dispatch retries included); and, for the runs this process
 *    owns that have not moved for a while (or all of them on the first tick), asks the
 *    engine to resume them, which does nothing when their loop or workflow is alive.
 *
 * About once an hour it also deletes expired discoveries and, with `activityRetention` set, the
 * log's expired entries.
 *
 * When everything works, a tick costs a lease write, a claim that finds nothing, and one read
 * of the running runs.
 */
import { LoomError } from '../errors'
import type { MigrationRecord, RunHost, RunRecord, RunStart } from '../ports'
import { isManualReview, stepTimeoutMs } from '../steps'
import type { LoomContext } from './context'

export interface ReconcilerTimings {
  intervalMs: number
  leaseMs: number
  stallMs: number
}

export interface Reconciler {
  /** One pass; resolves when it is done (errors are reported, never thrown). */
  tick(): Promise<void>
  /** Runs a tick now and then every `intervalMs`, until `stop`. */
  start(): Promise<void>
  stop(): Promise<void>
}

/** The longest pause between two deliveries of the same stored outcome. */
const MAX_REDELIVERY_PAUSE_MS = 60_000

/** Runs claimed from lapsed owners per tick, so one tick stays short however many there are. */
const CLAIM_LIMIT = 100

/** How often expired activity is deleted, how much per statement, and for how long per tick at most. */
const PRUNE_EVERY_MS = 3600_000
const PRUNE_BATCH = 5_000
const PRUNE_BUDGET_MS = 1_000
/** Expired discoveries deleted per statement: each may hold up to `limits.discoveryCandidates` staged rows. */
const DISCOVERY_PRUNE_BATCH = 10

export function reconciler(ctx: LoomContext, host: RunHost, timings: ReconcilerTimings): Reconciler {
  const { store, engine, onError, instanceId, now, activityRetentionMs } = ctx
  let first = true
  let nextPrune = 0
  let stopped = false
  let timer: ReturnType<typeof setTimeout> | undefined
  let running: Promise<void> = Promise.resolve()
  /** When each run of ours was last checked for a live loop; a stalled run is checked once per `stallMs`. */
  const checked = new Map<string, number>()
  /** The stored outcomes told again to their engine: when next, and the pause that grows each time. */
  const redelivered = new Map<string, { next: number; waitMs: number }>()

  const startOf = (run: RunRecord): RunStart => ({
    runId: run.runId,
    migrationId: run.migrationId,
    candidateId: run.candidateId,
    attempt: run.attempt,
    ...(run.owner === undefined ? {} : { owner: run.owner }),
  })

  /** Asks the engine to drive the run; a run it refuses for good ends `not_started` with the reason. */
  const resume = async (run: RunRecord) => {
    if (!engine.resume) return
    try {
      await engine.resume(startOf(run))
    } catch (error) {
      if (!LoomError.is(error) || error.code === 'unavailable') return onError(error)
      await host.failStep(startOf(run), run.currentStep, `the run could not be resumed: ${error.message}`)
    }
  }

  const deliver = async (run: RunRecord, stepName: string, success: boolean, metadata?: Record<string, string>) => {
    await engine.deliver(run.runId, { stepName, success, done: true, attempt: run.attempt, ...(metadata ? { metadata } : {}) })
  }

  const look = async (run: RunRecord, migration: MigrationRecord, nowMs: number) => {
    const step = migration.steps[run.currentStep]
    const recorded = step && run.steps.find((s) => s.result.stepName === step.name)
    const sinceUpdate = nowMs - Date.parse(run.updatedAt)
    if (step && recorded?.done) {
      // Stored, and the run has not moved since: the engine never heard of it. Told again with a
      // growing pause, so a run its engine cannot move (a workflow busy elsewhere) is not flooded.
      const key = `${run.runId}#${run.attempt}#${step.name}`
      const last = redelivered.get(key)
      if (sinceUpdate >= timings.intervalMs && (!last || nowMs >= last.next)) {
        const waitMs = Math.min(MAX_REDELIVERY_PAUSE_MS, last ? last.waitMs * 2 : timings.intervalMs)
        redelivered.set(key, { next: nowMs + waitMs, waitMs })
        await deliver(run, step.name, recorded.result.success, recorded.result.metadata).catch(onError)
      }
    } else if (step && !isManualReview(step) && run.stepStartedAt) {
      const timeoutMs = stepTimeoutMs(step, ctx.stepTimeoutMs)
      const deadline = Date.parse(run.stepStartedAt) + timeoutMs
      if (nowMs >= deadline) {
        const reason =
          `step "${step.name}" (worker app ${step.workerApp}) had no final report within its deadline of ${formatDuration(timeoutMs)}` +
          ` (began ${run.stepStartedAt}, due ${new Date(deadline).toISOString()})`
        // Ended in the store first, so the run ends even while its engine cannot be reached; then the
        // engine is told. Not when the worker's report came first: then that report decides.
        if (await host.failStep(startOf(run), run.currentStep, reason)) {
          await deliver(run, step.name, false, { error: reason }).catch(() => engine.cancel(run.runId).catch(onError))
        }
        return
      }
    }
    if (run.owner !== instanceId) return
    const lastChecked = checked.get(run.runId) ?? Number.NEGATIVE_INFINITY
    if (first || (sinceUpdate >= timings.stallMs && nowMs - lastChecked >= timings.stallMs)) {
      checked.set(run.runId, nowMs)
      await resume(run)
    }
  }

  const pass = async () => {
    const nowMs = now().getTime()
    await store.renewLease(instanceId, new Date(nowMs + timings.leaseMs).toISOString())
    for (const run of await store.claimRuns({ owner: instanceId, at: new Date(nowMs).toISOString(), limit: CLAIM_LIMIT })) {
      checked.set(run.runId, nowMs)
      await resume(run)
    }
    const runs = await store.listRuns('running')
    const migrations = new Map<string, Promise<MigrationRecord | undefined>>()
    const live = new Set<string>()
    for (const run of runs) {
      live.add(run.runId)
      if (!migrations.has(run.migrationId)) migrations.set(run.migrationId, store.getMigrationRecord(run.migrationId))
      const migration = await migrations.get(run.migrationId)
      if (migration) await look(run, migration, nowMs).catch(onError)
    }
    for (const runId of checked.keys()) if (!live.has(runId)) checked.delete(runId)
    for (const key of redelivered.keys()) if (!live.has(key.slice(0, key.indexOf('#')))) redelivered.delete(key)
    // Not in the first pass, which `ready` waits for: the runs come first.
    if (!first && nowMs >= nextPrune) await prune(nowMs)
    first = false
  }

  /**
   * Deletes expired entries for at most PRUNE_BUDGET_MS a tick, so the next lease renewal is
   * never late; what is left goes at the next tick.
   */
  const prune = async (nowMs: number) => {
    const started = Date.now()
    // Expired discoveries first: few rows each time, and what they staged may be large.
    let discoveriesLeft = true
    while (discoveriesLeft && Date.now() - started < PRUNE_BUDGET_MS) {
      discoveriesLeft = (await store.pruneDiscoveries(new Date(nowMs).toISOString(), DISCOVERY_PRUNE_BATCH)) >= DISCOVERY_PRUNE_BATCH
    }
    let activityLeft = activityRetentionMs !== undefined
    const before = new Date(nowMs - (activityRetentionMs ?? 0)).toISOString()
    while (activityLeft && Date.now() - started < PRUNE_BUDGET_MS) {
      activityLeft = (await store.pruneActivity(before, PRUNE_BATCH)) >= PRUNE_BATCH
    }
    if (!discoveriesLeft && !activityLeft) nextPrune = nowMs + PRUNE_EVERY_MS
  }

  const tick = () => {
    running = running.then(() => pass().catch(onError))
    return running
  }

  const schedule = () => {
    if (stopped) return
    timer = setTimeout(() => {
      tick().then(schedule)
    }, timings.intervalMs)
    // Never the reason a process stays alive.
    ;(timer as { unref?: () => void }).unref?.()
  }

  return {
    tick,
    async start() {
      await tick()
      schedule()
    },
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      await running
    },
  }
}

function formatDuration(ms: number): string {
  if (ms % 3600_000 === 0) return `${ms / 3600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  return `${Math.round(ms / 1000)}s`
}
