import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client'
import { LoomError } from '@loom/core'
import type { Engine, RunProgress, RunStart } from '@loom/core/engine'
import { loomRun, progressQuery, stepEventSignal, type LoomRunOptions } from './workflows'

export interface TemporalEngineOptions {
  /** The caller's Temporal client; the engine never closes its connection. */
  client: Client
  /** The task queue the Loom worker (`createLoomWorker`) polls. */
  taskQueue: string
  /** How long a call to Temporal may take before the engine answers `unavailable`. Default 10 s. */
  rpcTimeoutMs?: number
  /**
   * How long `deliver` (a step report's signal) may take before it answers `unavailable`.
   * Default 2 s: Loom stores a report before it delivers it and its reconciler delivers again
   * what did not arrive, so a report never waits long on a Temporal that is down.
   */
  deliverTimeoutMs?: number
  /**
   * How long `start` waits for a cancelled earlier attempt of the same run to close before
   * it terminates it. Default 5 s. The earlier attempt is stale (its store record moved
   * on), so ending it changes nothing in Loom; it only frees the workflow id.
   */
  supersedeWaitMs?: number
  /** How each run retries the dispatch of a step before failing it. */
  run?: LoomRunOptions
}

/** The memo key that carries the run's attempt, so `start` can tell a stale workflow from a duplicate. */
const ATTEMPT_MEMO = 'loomAttempt'

/**
 * The `Engine` on Temporal: each run is a `loomRun` workflow whose workflow id is the run id.
 * Runs execute in the worker made by `createLoomWorker`, on the same task queue, so they
 * survive restarts of both the service and the worker, and scale past one machine.
 *
 * A run id can be started again once its earlier workflow has closed (cancelled, failed),
 * never twice at once: a start that finds an open workflow of the same attempt is a
 * `conflict`; a Temporal that cannot be reached is `unavailable`, and nothing was started.
 * `resume` (called by Loom's reconciler) starts a run again where the store says it stands
 * when no workflow of its attempt is open (one terminated by hand, say), and does nothing
 * when one is; a step the store says was dispatched is not dispatched again.
 *
 * Every call to Temporal has a deadline, past which it is `unavailable`: `rpcTimeoutMs`
 * (10 s) for start, cancel, resume and progress; `deliverTimeoutMs` (2 s) for the delivery
 * of a step report, which Loom has already stored and delivers again by itself.
 *
 * @example
 * import { Client, Connection } from '@temporalio/client'
 * import { createLoom } from '@loom/core'
 * import { temporalEngine } from '@loom/temporal'
 *
 * const client = new Client({ connection: await Connection.connect({ address: 'localhost:7233' }) })
 * const loom = createLoom({ store, engine: temporalEngine({ client, taskQueue: 'loom', deliverTimeoutMs: 1_000 }) })
 */
export function temporalEngine(options: TemporalEngineOptions): Engine {
  const { client, taskQueue } = options
  const rpcTimeoutMs = options.rpcTimeoutMs ?? 10_000
  const deliverTimeoutMs = options.deliverTimeoutMs ?? 2_000
  const supersedeWaitMs = options.supersedeWaitMs ?? 5_000
  const runOptions = options.run ?? {}

  /** Runs one Temporal call with a deadline, turning transport failures into `unavailable`. */
  const call = async <T>(what: string, fn: () => Promise<T>, timeoutMs = rpcTimeoutMs): Promise<T> => {
    try {
      return await client.withDeadline(Date.now() + timeoutMs, fn)
    } catch (error) {
      if (LoomError.is(error) || error instanceof WorkflowExecutionAlreadyStartedError || error instanceof WorkflowNotFoundError) {
        throw error
      }
      throw new LoomError('unavailable', `temporal: ${what} failed: ${messageOf(error)}`, { cause: error })
    }
  }

  const handle = (runId: string): WorkflowHandle<typeof loomRun> => client.workflow.getHandle<typeof loomRun>(runId)

  const startWorkflow = (run: RunStart) =>
    call(`start of run ${run.runId}`, () =>
      client.workflow.start(loomRun, {
        workflowId: run.runId,
        taskQueue,
        args: [{ runId: run.runId, migrationId: run.migrationId, candidateId: run.candidateId, attempt: run.attempt }, runOptions],
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        workflowIdConflictPolicy: 'FAIL',
        memo: { [ATTEMPT_MEMO]: run.attempt },
      }),
    )

  /** The attempt an open workflow runs, or undefined when none is open under this id. */
  const openAttempt = async (runId: string): Promise<number | undefined> => {
    try {
      const description = await call(`describe of run ${runId}`, () => handle(runId).describe())
      if (description.status.name !== 'RUNNING') return undefined
      const attempt = description.memo?.[ATTEMPT_MEMO]
      return typeof attempt === 'number' ? attempt : Number.POSITIVE_INFINITY
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return undefined
      throw error
    }
  }

  /** Waits until no workflow is open under `runId`, up to `ms`; true when it closed. */
  const closed = async (runId: string, ms: number) => {
    const deadline = Date.now() + ms
    for (let delay = 25; ; delay = Math.min(delay * 2, 500)) {
      if ((await openAttempt(runId)) === undefined) return true
      if (Date.now() >= deadline) return false
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }

  const conflict = (runId: string) =>
    new LoomError('conflict', `run ${runId} already has an open workflow on Temporal`, { details: { status: 'running' } })

  /** Frees the workflow id held by an open workflow of an earlier attempt: waits for its cancel to close it, then terminates it. */
  const supersede = async (run: RunStart) => {
    if (await closed(run.runId, supersedeWaitMs)) return
    await call(`termination of run ${run.runId}`, () => handle(run.runId).terminate(`superseded by attempt ${run.attempt}`)).catch(
      (error) => {
        if (!(error instanceof WorkflowNotFoundError)) throw error
      },
    )
  }

  return {
    async start(run) {
      try {
        await startWorkflow(run)
        return
      } catch (error) {
        if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error
      }
      // An open workflow under this id. Of the same attempt (or unknown): a duplicate start.
      // Of an earlier attempt: a run Loom already cancelled whose workflow has not closed yet.
      const attempt = await openAttempt(run.runId)
      if (attempt !== undefined && attempt >= run.attempt) throw conflict(run.runId)
      if (attempt !== undefined) await supersede(run)
      try {
        await startWorkflow(run)
      } catch (error) {
        if (error instanceof WorkflowExecutionAlreadyStartedError) throw conflict(run.runId)
        throw error
      }
    },

    async resume(run) {
      // The workflow reads where the run stands (step in flight, outcomes, whether it was dispatched) from the store.
      const attempt = await openAttempt(run.runId)
      if (attempt !== undefined && attempt >= run.attempt) return
      if (attempt !== undefined) await supersede(run)
      try {
        await startWorkflow(run)
      } catch (error) {
        if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error
        // Another process resumed (or started) it meanwhile. An earlier attempt there is a stale
        // resume elsewhere: unavailable, so the reconciler tries again at its next tick.
        const now = await openAttempt(run.runId)
        if (now !== undefined && now < run.attempt) {
          throw new LoomError(
            'unavailable',
            `temporal: run ${run.runId} is held by attempt ${now}; attempt ${run.attempt} is resumed later`,
          )
        }
      }
    },

    async cancel(runId) {
      try {
        await call(`cancel of run ${runId}`, () => handle(runId).cancel())
      } catch (error) {
        // Never started, or closed already: nothing to stop.
        if (!(error instanceof WorkflowNotFoundError)) throw error
      }
    },

    async deliver(runId, event) {
      try {
        await call(`delivery to run ${runId}`, () => handle(runId).signal(stepEventSignal, event), deliverTimeoutMs)
      } catch (error) {
        // No open workflow: the event is in the store, and a run that starts later reads it there.
        if (!(error instanceof WorkflowNotFoundError)) throw error
      }
    },

    async progress(runId) {
      let description: WorkflowExecutionDescription
      try {
        description = await call(`describe of run ${runId}`, () => handle(runId).describe())
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return undefined
        throw error
      }
      const memo = description.memo?.[ATTEMPT_MEMO]
      const attempt = typeof memo === 'number' ? memo : 0
      switch (description.status.name) {
        case 'RUNNING':
          return call(`progress query of run ${runId}`, () => handle(runId).query(progressQuery))
        case 'COMPLETED':
          return call(`result of run ${runId}`, () => handle(runId).result())
        case 'CANCELLED':
        case 'TERMINATED':
          return { runId, attempt, state: 'cancelled' } satisfies RunProgress
        default:
          return { runId, attempt, state: 'failed' } satisfies RunProgress
      }
    },

    async health() {
      await call('health check', () => client.workflowService.getSystemInfo({}))
    },
  }
}

function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ''
  return `${error.message}${cause}`
}
