import { DispatchStepRequestSchema, LoomError, parse, parseRunId, type DispatchStepRequest, type StringMap } from '@loom/core'
import type { WorkerContext } from './context'
import { isPending, type StepHandler } from './define-migration'
import { Executions, type Execution, type StepReport } from './executions'
import { retryUnavailable, withRetry } from './retry'

/** A report on a step; it echoes the dispatch's attempt, so that Loom refuses it once the run has moved to another. */
const eventOf = (runId: string, stepName: string, attempt: number | undefined, success: boolean, metadata: StringMap | undefined) => {
  const { candidateId } = parseRunId(runId)
  return {
    stepName,
    candidate: { id: candidateId },
    success,
    ...(metadata ? { metadata } : {}),
    ...(attempt === undefined ? {} : { attempt }),
  }
}

const sameReport = (a: StepReport | undefined, b: StepReport) =>
  a !== undefined && a.success === b.success && JSON.stringify(a.metadata ?? {}) === JSON.stringify(b.metadata ?? {})

/**
 * Running dispatched steps and reporting their outcomes: one execution per (run id, step
 * name) at a time, each outcome sent once, retried while Loom cannot be reached.
 */
export function stepRunner(ctx: WorkerContext) {
  const { app, retry, signal, onError } = ctx
  const executions = new Executions()

  /** Sends a final outcome, retrying while Loom is unreachable; records where the execution ends up. */
  const send = async (runId: string, stepName: string, execution: Execution, report: StepReport): Promise<void> => {
    execution.state = 'reporting'
    execution.outcome = report
    try {
      const target = await ctx.loom()
      const event = eventOf(runId, stepName, execution.attempt, report.success, report.metadata)
      await withRetry(() => target.complete(runId, event), retry, signal)
      execution.state = 'reported'
    } catch (error) {
      // A final answer (the run was cancelled, the step ended differently) settles the step; an
      // unreachable Loom leaves the outcome to be sent again when the step is dispatched again.
      execution.state = retryUnavailable(error) ? 'unreported' : 'reported'
      throw error
    }
  }

  /** Sends progress on a step for `attempt`, retrying while Loom is unreachable. */
  const progress = async (runId: string, stepName: string, attempt: number | undefined, metadata: StringMap | undefined): Promise<void> => {
    const target = await ctx.loom()
    const event = eventOf(runId, stepName, attempt, true, metadata)
    await withRetry(() => target.prOpened(runId, event), retry, signal)
  }

  /** Reports progress from outside a handler, for the attempt of the step's latest execution here (if any). */
  const prOpened = (runId: string, stepName: string, report: { metadata?: StringMap }): Promise<void> =>
    progress(runId, stepName, executions.get(runId, stepName)?.attempt, report?.metadata)

  const runStep = (request: DispatchStepRequest, handler: StepHandler) => {
    const { runId, stepName } = request
    const execution = executions.set(runId, stepName, {
      state: 'running',
      ...(request.attempt === undefined ? {} : { attempt: request.attempt }),
    })
    execution.done = (async () => {
      // Let the dispatch be answered first: a handler's synchronous work must not hold up the 202.
      await new Promise((resolve) => setTimeout(resolve, 0))
      if (signal.aborted) return
      let report: StepReport
      try {
        const outcome = await handler({
          runId,
          migrationId: request.migrationId,
          stepName,
          candidate: request.candidate,
          config: request.config ?? {},
          request,
          signal,
          prOpened: (metadata) => progress(runId, stepName, execution.attempt, metadata),
        })
        // The handler reported by itself (worker.complete), or the worker is stopping: nothing more to send.
        if (execution.state !== 'running' || signal.aborted) return
        if (isPending(outcome)) {
          execution.state = 'pending'
          if (outcome.metadata) await progress(runId, stepName, execution.attempt, outcome.metadata)
          return
        }
        const metadata = outcome && typeof outcome === 'object' ? outcome.metadata : undefined
        report = metadata ? { success: true, metadata } : { success: true }
      } catch (error) {
        // A handler that gives up because the worker stops has not failed the step: the step is dispatched again.
        if (execution.state !== 'running' || signal.aborted) return
        report = { success: false, metadata: { error: error instanceof Error ? error.message : String(error) } }
      }
      await send(runId, stepName, execution, report)
    })().catch((error) => {
      if (!signal.aborted) onError(new Error(`step ${stepName} of run ${runId}: ${(error as Error).message ?? error}`, { cause: error }))
    })
  }

  return {
    /** Accepts a dispatched step and runs its handler in the background, unless this step is already in hand. */
    async dispatchStep(input: DispatchStepRequest): Promise<void> {
      if (signal.aborted) throw new LoomError('unavailable', `worker app ${app} is stopping`)
      const request = parse(DispatchStepRequestSchema, input, '')
      const migration = ctx.requireMigration(request.migrationId)
      const step = migration.steps.find((s) => s.name === request.stepName)
      if (!step) {
        throw new LoomError('not_found', `migration ${migration.id} of worker app ${app} has no step "${request.stepName}"`, {
          details: { field: 'stepName' },
        })
      }
      if (!step.run) {
        throw new LoomError('invalid', `step "${step.name}" is a manual-review step: an operator decides it, it is never dispatched`, {
          details: { field: 'stepName' },
        })
      }
      const existing = executions.get(request.runId, request.stepName)
      // An execution of another attempt (the run was cancelled and run again) is stale: Loom
      // refuses its reports, so the new attempt runs afresh; handlers are idempotent.
      const stale = existing?.attempt !== undefined && request.attempt !== undefined && existing.attempt !== request.attempt
      const held = stale ? undefined : existing
      switch (held?.state) {
        case 'running':
        case 'pending':
        case 'reporting':
          return // already in hand: its outcome is (or will be) reported once
        case 'unreported':
          held.done = send(request.runId, request.stepName, held, held.outcome!).catch(onError)
          return
        default:
          // Never seen, seen and reported, or stale: a dispatch after the report is a new attempt of the run.
          runStep(request, step.run)
      }
    },

    /** Reports a step's final outcome from outside its handler; a report already in flight with the same outcome is joined. */
    async complete(runId: string, stepName: string, report: StepReport): Promise<void> {
      parseRunId(runId)
      if (typeof stepName !== 'string' || !stepName)
        throw new LoomError('invalid', 'stepName: must be a non-empty string', { details: { field: 'stepName' } })
      if (typeof report?.success !== 'boolean')
        throw new LoomError('invalid', 'success: must be a boolean', { details: { field: 'success' } })
      const clean: StepReport = report.metadata ? { success: report.success, metadata: report.metadata } : { success: report.success }
      const existing = executions.get(runId, stepName)
      if (existing?.state === 'reporting' && sameReport(existing.outcome, clean) && existing.done) {
        await existing.done
        // The report in flight may have succeeded meanwhile; then there is nothing left to send.
        if ((existing.state as Execution['state']) === 'reported') return
      }
      const execution = existing ?? executions.set(runId, stepName, { state: 'reporting' })
      const done = send(runId, stepName, execution, clean)
      execution.done = done.catch(() => {})
      await done
    },

    prOpened,

    /** Settles when every handler and report in progress has. */
    async settled(): Promise<void> {
      await Promise.allSettled(executions.inFlight())
    },
  }
}
