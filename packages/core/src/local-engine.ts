import { LoomError } from './errors'
import type { Engine, RunHost, RunProgress, RunStart, StepEvent } from './ports'
import { isStoreFailure } from './run-host'
import { isManualReview } from './steps'

export interface LocalEngineOptions {
  /** How many times a step's dispatch is tried before the step fails. Default 4. */
  dispatchAttempts?: number
  /** Delay before the first dispatch retry, doubled for each further one. Default 500 ms. */
  retryDelayMs?: number
  /** How many dispatches may be in flight at once across this engine's runs; the others wait their turn. Default 32. */
  maxDispatches?: number
  /** The longest wait between two tries of a store operation that failed (the store unreachable). Default 5 s. */
  maxStoreRetryDelayMs?: number
  /**
   * How often a run waiting for a step's event looks at the store itself, in case the event went
   * elsewhere or its run ended in another process. Default 30 s.
   */
  recheckMs?: number
  /** Called with errors a run met and retries (the store failing, say). Default: console.error. */
  onError?: (error: unknown, runId: string) => void
}

interface Loop {
  run: RunStart
  /** Set by cancel (the run ends) or close (the process stops; the store keeps the run running). */
  stopped: boolean
  currentStep?: string
  waitingFor?: 'worker' | 'review'
  waiter?: { stepName: string; resolve: (event: StepEvent | undefined) => void }
  /** The awaited step's event, once it came: it ends the dispatch retries too. */
  arrived?: StepEvent
  wake?: () => void
  done: Promise<void>
}

/** Keeps the outcome of this many finished runs for `progress`. */
const FINISHED_KEPT = 1000

/** Thrown inside a loop when its run went stale (cancelled, or a newer attempt): the loop ends quietly. */
const STALE = Symbol('stale')

/**
 * The in-process engine for one machine. Each run is an async loop: it dispatches the
 * steps in order through the `StepDispatcher`, waits for each step's event, and ends the
 * run `completed` after the last success or `not_started` after a failure. Manual-review
 * steps are not dispatched; they wait for an operator's approve or reject.
 *
 * Progress lives in the store (the step in flight, whether its worker accepted it, each
 * step's outcome). A loop outlives its store: an operation that fails is tried again, with
 * a growing pause, until it succeeds or the run is cancelled. After a restart, `createLoom`'s
 * reconciler resumes the runs this process owned; a step whose worker had accepted it is
 * not dispatched again, it is awaited. Dispatches in flight are bounded (`maxDispatches`).
 *
 * @example
 * const loom = createLoom({ store: memoryStore(), engine: localEngine({ dispatchAttempts: 3 }) })
 */
export function localEngine(options: LocalEngineOptions = {}): Engine {
  const dispatchAttempts = Math.max(1, options.dispatchAttempts ?? 4)
  const retryDelayMs = options.retryDelayMs ?? 500
  const maxStoreRetryDelayMs = options.maxStoreRetryDelayMs ?? 5_000
  const recheckMs = options.recheckMs ?? 30_000
  const onError = options.onError ?? ((error, runId) => console.error(`[loom] run ${runId}:`, error))
  const slots = semaphore(Math.max(1, options.maxDispatches ?? 32))
  const loops = new Map<string, Loop>()
  const finished = new Map<string, RunProgress>()
  let host: RunHost | undefined

  const remember = (progress: RunProgress) => {
    finished.delete(progress.runId)
    finished.set(progress.runId, progress)
    if (finished.size > FINISHED_KEPT) finished.delete(finished.keys().next().value!)
  }

  const sleep = (loop: Loop, ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      loop.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })

  const waitFor = (loop: Loop, stepName: string) =>
    new Promise<StepEvent | undefined>((resolve) => {
      // Stopped while the step was being begun: nobody would resolve a waiter set now.
      if (loop.stopped) return resolve(undefined)
      loop.waiter = { stepName, resolve }
    })

  /**
   * Runs a store operation of the loop until it answers: a failure (the store unreachable, a
   * connection killed) is reported once and tried again with a growing pause, so the loop
   * never dies of it. A `conflict` means the run went stale; so does a stop.
   */
  const persist = async <T>(loop: Loop, operation: () => Promise<T>): Promise<T> => {
    for (let tries = 0; ; tries++) {
      if (loop.stopped) throw STALE
      try {
        return await operation()
      } catch (error) {
        if (LoomError.is(error, 'conflict')) throw STALE
        if (tries === 0) onError(error, loop.run.runId)
        await sleep(loop, Math.min(maxStoreRetryDelayMs, 100 * 2 ** tries))
      }
    }
  }

  /** Dispatches step `index`, retrying with backoff; returns the last error when every try failed. */
  const dispatch = async (h: RunHost, loop: Loop, index: number): Promise<unknown> => {
    let lastError: unknown
    let storeFailures = 0
    for (let attempt = 0; attempt < dispatchAttempts && !loop.stopped && !loop.arrived; attempt++) {
      if (attempt > 0) await sleep(loop, retryDelayMs * 2 ** (attempt - 1))
      const release = await slots.acquire()
      try {
        if (loop.stopped || loop.arrived) return undefined
        await h.dispatch(loop.run, index)
        return undefined
      } catch (error) {
        if (LoomError.is(error, 'conflict')) throw STALE
        if (isStoreFailure(error)) {
          // The store, not the worker: wait for it like every other store operation, without using up a try.
          if (storeFailures++ === 0) onError(error, loop.run.runId)
          attempt--
          release()
          await sleep(loop, Math.min(maxStoreRetryDelayMs, 100 * 2 ** storeFailures))
          continue
        }
        storeFailures = 0
        lastError = error
        // A worker that refused the step (bad request, wrong token) will refuse it again.
        if (LoomError.is(error) && error.code !== 'unavailable') return error
      } finally {
        release()
      }
    }
    return lastError
  }

  /**
   * The awaited step's event; and every `recheckMs` a look at the store, so that a loop whose
   * run ended or moved on elsewhere (another process cancelled it, took it over, or stored the
   * report) does not wait for ever.
   */
  const awaitOutcome = async (h: RunHost, loop: Loop, stepName: string, event: Promise<StepEvent | undefined>) => {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const tick = new Promise<'recheck'>((resolve) => {
        timer = setTimeout(() => resolve('recheck'), recheckMs)
      })
      const first = await Promise.race([event, tick])
      clearTimeout(timer)
      if (first !== 'recheck') return first
      if (!(await persist(loop, () => h.load(loop.run)))) return undefined
      const stored = await persist(loop, () => h.reportedOutcome(loop.run, stepName))
      if (stored) return stored
    }
  }

  const drive = async (h: RunHost, loop: Loop): Promise<RunProgress['state'] | undefined> => {
    const run = loop.run
    const loaded = await persist(loop, () => h.load(run))
    if (!loaded) return undefined
    const steps = loaded.migration.steps
    for (let index = loaded.run.currentStep; index < steps.length; index++) {
      const step = steps[index]!
      if (!(await persist(loop, () => h.beginStep(run, index)))) return undefined
      loop.currentStep = step.name
      loop.waitingFor = isManualReview(step) ? 'review' : 'worker'
      // Wait before looking: an event delivered while we look is caught either way.
      loop.arrived = undefined
      const event = waitFor(loop, step.name)
      let outcome = await persist(loop, () => h.reportedOutcome(run, step.name))
      if (!outcome) {
        // A step its worker accepted before this loop began (a run resumed after a restart) is not sent again: the host knows.
        if (!isManualReview(step)) {
          const error = await dispatch(h, loop, index)
          // The worker may have reported the step although our dispatch looked failed (a timeout).
          if (error !== undefined && !loop.arrived) {
            const reason = error instanceof Error ? error.message : String(error)
            await persist(loop, () => h.failStep(run, index, `dispatch to worker app ${step.workerApp} failed: ${reason}`))
            return 'failed'
          }
        }
        outcome = await awaitOutcome(h, loop, step.name, event)
      }
      loop.waiter = undefined
      if (!outcome || loop.stopped) return undefined
      if (!outcome.success) return (await persist(loop, () => h.finish(run, 'failed'))) ? 'failed' : undefined
    }
    return (await persist(loop, () => h.finish(run, 'completed'))) ? 'completed' : undefined
  }

  const launch = (h: RunHost, run: RunStart) => {
    const loop: Loop = { run, stopped: false, done: Promise.resolve() }
    loops.set(run.runId, loop)
    finished.delete(run.runId)
    loop.done = drive(h, loop)
      .catch((error) => {
        // Stale, or a bug: either way the store keeps the run, and the reconciler finds it if it is still running.
        if (error !== STALE) onError(error, run.runId)
        return undefined
      })
      .then((state) => remember({ runId: run.runId, attempt: run.attempt, state: state ?? 'cancelled' }))
      .finally(() => {
        if (loops.get(run.runId) === loop) loops.delete(run.runId)
      })
  }

  const stop = (loop: Loop) => {
    loop.stopped = true
    loop.wake?.()
    loop.waiter?.resolve(undefined)
  }

  return {
    async attach(h) {
      host = h
    },

    async resume(run) {
      if (!host) throw new LoomError('unavailable', 'localEngine: not attached; pass it to createLoom')
      const existing = loops.get(run.runId)
      if (existing && !existing.stopped && existing.run.attempt >= run.attempt && existing.run.owner === run.owner) return
      if (existing) stop(existing)
      launch(host, run)
    },

    async start(run) {
      if (!host) throw new LoomError('unavailable', 'localEngine: not attached; pass it to createLoom')
      const existing = loops.get(run.runId)
      if (existing && !existing.stopped && existing.run.attempt >= run.attempt) {
        throw new LoomError('conflict', `run ${run.runId} is already running in this engine`)
      }
      // A loop of an earlier attempt still waiting here: its run ended elsewhere (another process cancelled it).
      if (existing) stop(existing)
      launch(host, run)
    },

    async cancel(runId) {
      const loop = loops.get(runId)
      if (loop) stop(loop)
    },

    async deliver(runId, event) {
      const loop = loops.get(runId)
      if (!loop || !event.done || loop.waiter?.stepName !== event.stepName) return
      if (event.attempt !== undefined && event.attempt !== loop.run.attempt) return
      loop.arrived = event
      loop.waiter.resolve(event)
      loop.wake?.()
    },

    async progress(runId) {
      const loop = loops.get(runId)
      if (!loop) return finished.get(runId)
      const progress: RunProgress = { runId, attempt: loop.run.attempt, state: loop.stopped ? 'cancelled' : 'running' }
      if (loop.currentStep !== undefined) progress.currentStep = loop.currentStep
      if (loop.waitingFor) progress.waitingFor = loop.waitingFor
      return progress
    },

    async health() {},

    async close() {
      const running = [...loops.values()]
      running.forEach(stop)
      await Promise.all(running.map((l) => l.done))
    },
  }
}

/** At most `size` holders at once; the others wait in order. */
function semaphore(size: number): { acquire(): Promise<() => void> } {
  let free = size
  const waiting: Array<() => void> = []
  const release = () => {
    const next = waiting.shift()
    if (next) next()
    else free++
  }
  return {
    async acquire() {
      if (free > 0) free--
      else await new Promise<void>((resolve) => waiting.push(resolve))
      let released = false
      return () => {
        if (released) return
        released = true
        release()
      }
    },
  }
}
