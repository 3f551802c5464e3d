import { type Actor, checkOwner } from '../actors'
import { LoomError } from '../errors'
import { CancelOptionsSchema, ExecuteOptionsSchema, SlugSchema, type Candidate, type StepCompletedEvent } from '../schemas'
import { isManualReview } from '../steps'
import type { RunRecord } from '../ports'
import { parse } from '../validate'
import type { LoomContext } from './context'
import type { Loom } from './index'
import { runInfo, runStatusResponse } from './shapes'

type RunMethods = Pick<Loom, 'queue' | 'dequeue' | 'execute' | 'cancel' | 'complete' | 'prOpened' | 'getRun' | 'runStatus'>

/** A candidate's run: the operator's actions on it, the reports that move it, and how it reads, as `actor`. */
export function runMethods(ctx: LoomContext, actor: Actor): RunMethods {
  const { store, engine, onError, at, requireRecord, runOf, notFound, move, instanceId, schemas } = ctx

  const runRecord = async (runId: string): Promise<{ migrationId: string; candidate: Candidate; run: RunRecord | undefined }> => {
    const { migrationId, candidateId } = runOf(runId)
    const found = await store.getCandidate(migrationId, candidateId)
    if (!found) return notFound(migrationId, candidateId)
    return { migrationId, candidate: found.candidate, run: found.run }
  }

  /** Records a step report, then tells the engine; `done` is false for progress (a pull request opened). */
  const report = async (runId: string, input: StepCompletedEvent, done: boolean) => {
    const { migrationId, candidateId } = runOf(runId)
    const event = parse(schemas.StepCompletedEvent, input, '')
    // The record alone: owner and steps are all a report needs, whatever the migration's size.
    const migration = await requireRecord(migrationId)
    checkOwner(actor, migration, 'report on runs of')
    if (event.candidate.id !== candidateId) {
      throw new LoomError('invalid', `candidate.id: "${event.candidate.id}" is not the candidate of run ${runId}`, {
        details: { field: 'candidate.id' },
      })
    }
    const step = migration.steps.find((s) => s.name === event.stepName)
    if (!step) {
      throw new LoomError('invalid', `stepName: migration ${migrationId} has no step "${event.stepName}"`, {
        details: { field: 'stepName' },
      })
    }
    if (actor.kind === 'worker' && isManualReview(step)) {
      throw new LoomError(
        'forbidden',
        `worker ${actor.name} may not decide step "${step.name}" of run ${runId}: approving or rejecting a manual review is an operator's action`,
        { details: { actor, stepName: step.name } },
      )
    }
    if (!done) event.metadata = { phase: 'open', ...event.metadata }
    // A decided review says so itself, whatever the caller sent: a rejection is how its run ends.
    else if (isManualReview(step)) event.metadata = { ...event.metadata, review: event.success ? 'approved' : 'rejected' }
    // The attempt fences the report; the result stored is of the run's current attempt by construction.
    const { attempt, ...result } = event
    const recorded = await store.recordStep({
      migrationId,
      candidateId,
      result,
      done,
      at: at(),
      by: actor,
      ...(attempt === undefined ? {} : { attempt }),
    })
    switch (recorded.outcome) {
      case 'not_found':
        return notFound(migrationId, candidateId)
      case 'not_running':
        if (attempt !== undefined && recorded.attempt !== undefined && recorded.attempt !== attempt) {
          throw new LoomError(
            'conflict',
            `run ${runId}: the report is for attempt ${attempt}, but the current attempt is ${recorded.attempt} (${recorded.status}); a report of another attempt changes nothing`,
            { details: { status: recorded.status, attempt: recorded.attempt, reportedAttempt: attempt } },
          )
        }
        throw new LoomError('conflict', `run ${runId} is not running: the candidate is ${recorded.status}`, {
          details: { status: recorded.status },
        })
      case 'step_ended':
        throw new LoomError('conflict', `step "${event.stepName}" of run ${runId} has already ended`, {
          details: { status: 'running' },
        })
    }
    // Delivered on duplicates too: delivery is idempotent, and a retry heals a delivery that failed.
    // The report is stored, so it is accepted whatever the engine says now: the reconciler
    // delivers what is stored but did not arrive (an answer of 503 would claim nothing changed).
    await engine
      .deliver(runId, {
        stepName: result.stepName,
        success: result.success,
        done,
        attempt: recorded.run.attempt,
        ...(result.metadata ? { metadata: result.metadata } : {}),
      })
      .catch((error: unknown) =>
        onError(
          new LoomError('unavailable', `engine: the report of run ${runId} is stored but not delivered yet: ${messageOf(error)}`, {
            cause: error,
          }),
        ),
      )
  }

  return {
    async queue(migrationId, candidateId) {
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      return (await move('queue', migrationId, candidateId, { by: actor })).runId
    },

    async dequeue(runId) {
      const { migrationId, candidateId } = runOf(runId)
      await move('dequeue', migrationId, candidateId, { by: actor })
    },

    async execute(runId, options = {}) {
      const { migrationId, candidateId } = runOf(runId)
      const resume = parse(ExecuteOptionsSchema, options, '').resume === true
      const run = await move('execute', migrationId, candidateId, { owner: instanceId, by: actor, ...(resume ? { resume } : {}) })
      try {
        await engine.start({ runId, migrationId, candidateId, attempt: run.attempt, owner: instanceId })
      } catch (error) {
        // The engine refused: put the candidate back to queued (unless a cancel took it meanwhile).
        await move('unexecute', migrationId, candidateId, { attempt: run.attempt }).catch(() => {})
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

    async cancel(runId, options = {}) {
      const { migrationId, candidateId } = runOf(runId)
      const { reason } = parse(CancelOptionsSchema, options, '')
      const run = await move('cancel', migrationId, candidateId, { by: actor, ...(reason === undefined ? {} : { reason }) })
      // The store is the truth from here: a run the engine fails to stop finds itself stale at its next step.
      await engine.cancel(run.runId).catch(onError)
    },

    complete: (runId, event) => report(runId, event, true),

    prOpened: (runId, event) => report(runId, event, false),

    async getRun(runId) {
      const { migrationId, candidate, run } = await runRecord(runId)
      const info = runInfo(migrationId, candidate, run)
      if (!info)
        throw new LoomError('not_found', `run ${runId} not found: the candidate is not_started`, { details: { status: 'not_started' } })
      return info
    },

    async runStatus(runId) {
      const { migrationId, candidate, run } = await runRecord(runId)
      const status = runStatusResponse(migrationId, candidate, run)
      if (!status) throw new LoomError('not_found', `run ${runId} has not been executed`)
      return status
    },
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
