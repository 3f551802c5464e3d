/**
 * Test doubles for the worker side: a dispatcher that records what it is handed and can be
 * told to fail, block, or report each step at once through Loom.
 */
import { LoomError, type DispatchStepRequest, type StepDispatcher, type WorkerTarget } from '@loom/core'

export interface RecordingDispatcher extends StepDispatcher {
  readonly requests: DispatchStepRequest[]
  /** What dispatch does; default: accept. */
  behaviour: (request: DispatchStepRequest, target: WorkerTarget) => Promise<void> | void
  /** Resolves with the n-th request (0-based) once it has been dispatched. */
  nth(n: number, ms?: number): Promise<DispatchStepRequest>
}

export function recordingDispatcher(): RecordingDispatcher {
  const waiters: (() => void)[] = []
  const dispatcher: RecordingDispatcher = {
    requests: [],
    behaviour: () => {},
    async dispatch(target, request) {
      dispatcher.requests.push(request)
      for (const wake of waiters.splice(0)) wake()
      await dispatcher.behaviour(request, target)
    },
    nth: (n, ms = 20_000) => until(() => dispatcher.requests[n], ms, `dispatch #${n + 1}`),
  }
  return dispatcher
}

/** A dispatcher whose worker app cannot be reached. */
export const unreachable = () => {
  throw new LoomError('unavailable', 'worker app charts: connection refused')
}

/** Polls `probe` until it returns a value other than undefined/false, for at most `ms`. */
export async function until<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + ms
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const value = await probe()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
}
