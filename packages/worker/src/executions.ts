import type { StringMap } from '@loom/core'

/** A step's final outcome as the worker reports it. */
export interface StepReport {
  success: boolean
  metadata?: StringMap
}

/**
 * Where one dispatched step stands in this worker:
 * - `running`: the handler is running;
 * - `pending`: the handler returned {@link Pending}; `worker.complete` will report;
 * - `reporting`: the outcome is being sent to Loom (with retries);
 * - `reported`: Loom accepted the outcome, or refused it for good (`conflict`: the run moved on);
 * - `unreported`: Loom could not be reached before the retries ran out. A dispatch of the
 *   same step sends this outcome again instead of running the handler a second time.
 */
type ExecutionState = 'running' | 'pending' | 'reporting' | 'reported' | 'unreported'

export interface Execution {
  state: ExecutionState
  /** The attempt of the dispatch it runs, echoed in its reports; absent when Loom sent none (API 0.2) or it was never dispatched here. */
  attempt?: number
  outcome?: StepReport
  /** Settles when the handler has returned and its outcome, if any, was sent. */
  done?: Promise<void>
}

/** Keeps this many finished executions; older finished ones are forgotten first. */
const KEPT = 10_000

/**
 * The steps this worker has in hand, by (run id, step name). It is what makes a dispatch
 * idempotent: the engine dispatches the step in flight again after a restart, and a
 * transport may deliver a message twice, but one step of one attempt of a run is never
 * handled twice at once in this process, nor reported with two different outcomes.
 */
export class Executions {
  private readonly byKey = new Map<string, Execution>()

  static key(runId: string, stepName: string): string {
    return `${runId}\u0000${stepName}`
  }

  get(runId: string, stepName: string): Execution | undefined {
    return this.byKey.get(Executions.key(runId, stepName))
  }

  /** Records `execution`, moving it to the end (most recent), and forgets the oldest finished ones past the limit. */
  set(runId: string, stepName: string, execution: Execution): Execution {
    const key = Executions.key(runId, stepName)
    this.byKey.delete(key)
    this.byKey.set(key, execution)
    if (this.byKey.size > KEPT) {
      for (const [k, e] of this.byKey) {
        if (this.byKey.size <= KEPT) break
        if (e.state === 'reported' || e.state === 'unreported') this.byKey.delete(k)
      }
    }
    return execution
  }

  /** Every execution whose handler or report is still in progress. */
  inFlight(): Promise<void>[] {
    return [...this.byKey.values()].flatMap((e) => (e.done && (e.state === 'running' || e.state === 'reporting') ? [e.done] : []))
  }
}
