import { LoomError } from './errors'
import { joinRunId } from './ids'
import type { LoadedRun, MigrationStore, RunHost, RunStart, StepDispatcher, StepEvent } from './ports'
import type { LoomEvent, StepResult } from './schemas'
import { STATUS_RULES } from './rules'
import { isManualReview, stepEventName } from './steps'

export interface RunHostOptions {
  store: MigrationStore
  dispatcher: StepDispatcher
  /** Receives the changes the runs make (status changes, step progress). */
  emit?: (event: LoomEvent) => void
  now?: () => Date
}

/**
 * The operations an engine performs on runs, over a store and a dispatcher. `createLoom`
 * builds one for its engine; an engine hosted in another process (a Temporal worker)
 * builds its own with the same function, so the run logic exists once.
 */
export function createRunHost({ store, dispatcher, emit = () => {}, now = () => new Date() }: RunHostOptions): RunHost {
  const at = () => now().toISOString()

  const load = async (run: RunStart): Promise<LoadedRun | undefined> => {
    const [migration, found] = await Promise.all([
      store.getMigration(run.migrationId),
      store.getCandidate(run.migrationId, run.candidateId),
    ])
    if (!migration || !found?.run) return undefined
    if (found.run.state !== 'running' || found.run.attempt !== run.attempt) return undefined
    return { migration, candidate: found.candidate, run: found.run }
  }

  const record = async (run: RunStart, result: StepResult, done: boolean) => {
    const recorded = await store.recordStep({
      migrationId: run.migrationId,
      candidateId: run.candidateId,
      attempt: run.attempt,
      result,
      done,
      at: at(),
    })
    if (recorded.outcome === 'recorded') {
      emit({ type: 'step.reported', runId: run.runId, migrationId: run.migrationId, candidateId: run.candidateId, result, done, at: at() })
    }
    return recorded.outcome === 'recorded' || recorded.outcome === 'duplicate'
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
    emit({
      type: 'run.status',
      runId: run.runId,
      migrationId: run.migrationId,
      candidateId: run.candidateId,
      status: outcome === 'completed' ? 'completed' : 'not_started',
      previous: result.previous,
      at: at(),
    })
    return true
  }

  return {
    load,

    async beginStep(run, index) {
      const loaded = await load(run)
      const step = loaded?.migration.steps[index]
      if (!loaded || !step) return false
      if (!(await store.setCurrentStep(run.migrationId, run.candidateId, run.attempt, index))) return false
      const reported = loaded.run.steps.some((s) => s.result.stepName === step.name)
      if (isManualReview(step) && !reported) {
        const metadata: Record<string, string> = { phase: 'awaiting_review' }
        if (step.config?.instructions) metadata.instructions = step.config.instructions
        // API 0.2 recorded a step awaiting review as a success in progress; its consoles read `success` before `phase`.
        return record(run, { stepName: step.name, candidate: { id: run.candidateId }, success: true, metadata }, false)
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
      const loaded = await load(run)
      const step = loaded?.migration.steps[index]
      if (!loaded || !step) throw new LoomError('conflict', `run ${run.runId} is no longer running at attempt ${run.attempt}`)
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
      const target = loaded.migration.workerUrl
        ? { workerApp: step.workerApp, workerUrl: loaded.migration.workerUrl }
        : { workerApp: step.workerApp }
      await dispatcher.dispatch(target, request)
    },

    async failStep(run, index, reason) {
      const loaded = await load(run)
      const step = loaded?.migration.steps[index]
      if (!loaded || !step) return
      const result: StepResult = {
        stepName: step.name,
        candidate: { id: run.candidateId },
        success: false,
        metadata: { error: reason },
      }
      if (await record(run, result, true)) await finish(run, 'failed')
    },

    finish,

    async runningRuns() {
      const runs = await store.listRuns('running')
      return runs.map((r) => ({
        runId: joinRunId(r.migrationId, r.candidateId),
        migrationId: r.migrationId,
        candidateId: r.candidateId,
        attempt: r.attempt,
      }))
    },
  }
}
