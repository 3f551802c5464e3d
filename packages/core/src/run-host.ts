import { LoomError } from './errors'
import type { LoadedRun, MigrationStore, RunHost, RunStart, StepDispatcher, StepEvent } from './ports'
import type { StepResult } from './schemas'
import { STATUS_RULES } from './rules'
import { isManualReview, stepEventName } from './steps'

/** How many times the acceptance of a dispatch is written before giving up on it (about 3 s in all). */
const MARK_TRIES = 5

/**
 * Runs a store operation of a dispatch: its failure is the store's, not the worker's, so it is
 * `unavailable` with `details.dependency: 'store'`, which engines retry without counting it
 * against the dispatch's tries.
 */
async function fromStore<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation()
  } catch (error) {
    if (LoomError.is(error, 'conflict')) throw error
    const reason = error instanceof Error ? error.message : String(error)
    throw new LoomError('unavailable', `store: ${reason}`, { cause: error, details: { dependency: 'store' } })
  }
}

/** True for a failure of the store during a dispatch (see `RunHost.dispatch`), not of the worker. */
export function isStoreFailure(error: unknown): boolean {
  return LoomError.is(error, 'unavailable') && error.details?.dependency === 'store'
}

export interface RunHostOptions {
  store: MigrationStore
  dispatcher: StepDispatcher
  now?: () => Date
}

/**
 * The operations an engine performs on runs, over a store and a dispatcher. `createLoom`
 * builds one for its engine; an engine hosted in another process (a Temporal worker)
 * builds its own with the same function, so the run logic exists once.
 */
export function createRunHost({ store, dispatcher, now = () => new Date() }: RunHostOptions): RunHost {
  const at = () => now().toISOString()

  const load = async (run: RunStart): Promise<LoadedRun | undefined> => {
    const [migration, found] = await Promise.all([
      store.getMigrationRecord(run.migrationId),
      store.getCandidate(run.migrationId, run.candidateId),
    ])
    if (!migration || !found?.run) return undefined
    if (found.run.state !== 'running' || found.run.attempt !== run.attempt) return undefined
    // Taken over by another process (this one's lease lapsed): its loop, not this one, drives the run now.
    if (run.owner !== undefined && found.run.owner !== run.owner) return undefined
    return { migration, candidate: found.candidate, run: found.run }
  }

  /** Stores a step result; its outcome says whether it was new, a repeat, refused as ended, or the run went stale. */
  const record = async (run: RunStart, result: StepResult, done: boolean) => {
    const recorded = await store.recordStep({
      migrationId: run.migrationId,
      candidateId: run.candidateId,
      attempt: run.attempt,
      result,
      done,
      at: at(),
    })
    return recorded.outcome
  }

  const finish = async (run: RunStart, outcome: 'completed' | 'failed') => {
    const action = outcome === 'completed' ? 'complete' : 'fail'
    const result = await store.transition({
      migrationId: run.migrationId,
      candidateId: run.candidateId,
      action,
      attempt: run.attempt,
      at: at(),
    })
    if (!result.ok) {
      // Run again (a Temporal activity replayed after its worker died): this attempt already
      // ended this way, which is not the same as having gone stale.
      const found = await store.getCandidate(run.migrationId, run.candidateId)
      return found?.run?.attempt === run.attempt && found.run.state === STATUS_RULES[action].to
    }
    return true
  }

  return {
    load,

    async beginStep(run, index) {
      const loaded = await load(run)
      const step = loaded?.migration.steps[index]
      if (!loaded || !step) return false
      const begun = {
        migrationId: run.migrationId,
        candidateId: run.candidateId,
        attempt: run.attempt,
        index,
        phase: 'begun',
        at: at(),
      } as const
      if (!(await store.markStep(begun))) return false
      const reported = loaded.run.steps.some((s) => s.result.stepName === step.name)
      if (isManualReview(step) && !reported) {
        const metadata: Record<string, string> = { phase: 'awaiting_review' }
        if (step.config?.instructions) metadata.instructions = step.config.instructions
        // API 0.2 recorded a step awaiting review as a success in progress; its consoles read `success` before `phase`.
        // step_ended: the operator's decision came first, and the run goes on to it.
        const outcome = await record(run, { stepName: step.name, candidate: { id: run.candidateId }, success: true, metadata }, false)
        return outcome !== 'not_running' && outcome !== 'not_found'
      }
      return true
    },

    async reportedOutcome(run, stepName): Promise<StepEvent | undefined> {
      const found = await store.getCandidate(run.migrationId, run.candidateId)
      const step = found?.run?.attempt === run.attempt ? found.run.steps.find((s) => s.result.stepName === stepName) : undefined
      if (!step?.done) return undefined
      const event: StepEvent = { stepName, success: step.result.success, done: true }
      if (step.result.metadata) event.metadata = step.result.metadata
      return event
    },

    async dispatch(run, index) {
      const loaded = await fromStore(() => load(run))
      const step = loaded?.migration.steps[index]
      if (!loaded || !step) throw new LoomError('conflict', `run ${run.runId} is no longer running at attempt ${run.attempt}`)
      // A try that comes after the run moved on (a dispatch tried again late) sends nothing.
      if (loaded.run.currentStep !== index) throw new LoomError('conflict', `run ${run.runId} is no longer at step ${index + 1}`)
      // Accepted already in this attempt (a dispatch whose answer was lost, tried again), or reported: not sent twice.
      if (loaded.run.stepDispatchedAt !== undefined) return
      if (loaded.run.steps.some((s) => s.done && s.result.stepName === step.name)) return
      const request = {
        migrationId: run.migrationId,
        runId: run.runId,
        stepName: step.name,
        candidate: loaded.candidate,
        callbackId: run.runId,
        eventName: stepEventName(step.name),
        attempt: run.attempt,
        ...(step.config ? { config: step.config } : {}),
      }
      const { workerUrl, owner } = loaded.migration
      const target = { workerApp: step.workerApp, ...(workerUrl ? { workerUrl } : {}), ...(owner ? { owner } : {}) }
      await dispatcher.dispatch(target, request)
      const accepted = {
        migrationId: run.migrationId,
        candidateId: run.candidateId,
        attempt: run.attempt,
        index,
        phase: 'dispatched',
      } as const
      // The worker has the step: recording that must not turn into a failed dispatch (tried again, it
      // would reach the worker twice). A few quick tries; should the store stay away, only a resume
      // after a restart could send it again. False: the run moved on meanwhile (its report came first).
      for (let tries = 0; tries < MARK_TRIES; tries++) {
        try {
          await store.markStep({ ...accepted, at: at() })
          return
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** tries))
        }
      }
    },

    async failStep(run, index, reason) {
      const loaded = await load(run)
      const step = loaded?.migration.steps[index]
      if (!loaded || !step) return false
      const result: StepResult = {
        stepName: step.name,
        candidate: { id: run.candidateId },
        success: false,
        metadata: { error: reason },
      }
      // Only this failure ends the run: a report that came first (step_ended) decides instead.
      const outcome = await record(run, result, true)
      if (outcome !== 'recorded' && outcome !== 'duplicate') return false
      return finish(run, 'failed')
    },

    finish,
  }
}
