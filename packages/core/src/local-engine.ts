import { LoomError } from './errors'
import type { Engine, RunHost, RunProgress, RunStart, StepEvent } from './ports'
import { isManualReview } from './steps'

export interface LocalEngineOptions {
  /** How many times a step's dispatch is tried before the step fails. Default 4. */
  dispatchAttempts?: number
  /** Delay before the first dispatch retry, doubled for each further one. Default 500 ms. */
  retryDelayMs?: number
  /** Resume the runs the store says are running when the engine is attached. Default true. */
  resume?: boolean
  /** Called with errors a run could not handle itself (the store failing, say). Default: console.error. */
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

/**
 * The in-process engine for one machine. Each run is an async loop: it dispatches the
 * steps in order through the `StepDispatcher`, waits for each step's event, and ends the
 * run `completed` after the last success or `not_started` after a failure. Manual-review
 * steps are not dispatched; they wait for an operator's approve or reject.
 *
 * Progress lives in the store (the step in flight, each step's outcome), so an engine
 * attached to a persistent store after a restart resumes the running runs, dispatching the
 * step in flight again. Workers must therefore accept a step dispatched twice.
 *
 * @example
 * const loom = createLoom({ store: memoryStore(), engine: localEngine({ dispatchAttempts: 3 }) })
 */
export function localEngine(options: LocalEngineOptions = {}): Engine {
  const dispatchAttempts = Math.max(1, options.dispatchAttempts ?? 4)
  const retryDelayMs = options.retryDelayMs ?? 500
  const onError = options.onError ?? ((error, runId) => console.error(`[loom] run ${runId}:`, error))
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

  /** Dispatches step `index`, retrying with backoff; returns the last error when every try failed. */
  const dispatch = async (h: RunHost, loop: Loop, index: number): Promise<unknown> => {
    let lastError: unknown
    for (let attempt = 0; attempt < dispatchAttempts && !loop.stopped && !loop.arrived; attempt++) {
      if (attempt > 0) await sleep(loop, retryDelayMs * 2 ** (attempt - 1))
      if (loop.stopped || loop.arrived) return undefined
      try {
        await h.dispatch(loop.run, index)
        return undefined
      } catch (error) {
        if (LoomError.is(error, 'conflict')) return undefined // the run went stale meanwhile
        lastError = error
        // A worker that refused the step (bad request, wrong token) will refuse it again.
        if (LoomError.is(error) && error.code !== 'unavailable') return error
      }
    }
    return lastError
  }

  const drive = async (h: RunHost, loop: Loop): Promise<RunProgress['state'] | undefined> => {
    const loaded = await h.load(loop.run)
    if (!loaded) return undefined
    const steps = loaded.migration.steps
    for (let index = loaded.run.currentStep; index < steps.length; index++) {
      const step = steps[index]!
      if (loop.stopped || !(await h.beginStep(loop.run, index))) return undefined
      loop.currentStep = step.name
      loop.waitingFor = isManualReview(step) ? 'review' : 'worker'
      // Wait before looking: an event delivered while we look is caught either way.
      loop.arrived = undefined
      const event = waitFor(loop, step.name)
      let outcome = await h.reportedOutcome(loop.run, step.name)
      if (!outcome) {
        if (!isManualReview(step)) {
          const error = await dispatch(h, loop, index)
          // The worker may have reported the step although our dispatch looked failed (a timeout).
          if (error !== undefined && !loop.arrived) {
            const reason = error instanceof Error ? error.message : String(error)
            await h.failStep(loop.run, index, `dispatch to worker app ${step.workerApp} failed: ${reason}`)
            return 'failed'
          }
        }
        outcome = await event
      }
      loop.waiter = undefined
      if (!outcome || loop.stopped) return undefined
      if (!outcome.success) return (await h.finish(loop.run, 'failed')) ? 'failed' : undefined
    }
    return (await h.finish(loop.run, 'completed')) ? 'completed' : undefined
  }

  const launch = (h: RunHost, run: RunStart) => {
    const loop: Loop = { run, stopped: false, done: Promise.resolve() }
    loops.set(run.runId, loop)
    finished.delete(run.runId)
    loop.done = drive(h, loop)
      .then((state) => remember({ runId: run.runId, attempt: run.attempt, state: state ?? 'cancelled' }))
      .catch((error) => onError(error, run.runId))
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
      if (options.resume === false) return
      for (const run of await h.runningRuns()) if (!loops.has(run.runId)) launch(h, run)
    },

    async start(run) {
      if (!host) throw new LoomError('unavailable', 'localEngine: not attached; pass it to createLoom')
      const existing = loops.get(run.runId)
      if (existing && !existing.stopped) {
        throw new LoomError('conflict', `run ${run.runId} is already running in this engine`)
      }
      launch(host, run)
    },

    async cancel(runId) {
      const loop = loops.get(runId)
      if (loop) stop(loop)
    },

    async deliver(runId, event) {
      const loop = loops.get(runId)
      if (!loop || !event.done || loop.waiter?.stepName !== event.stepName) return
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
