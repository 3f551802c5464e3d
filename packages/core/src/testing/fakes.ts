import { expect } from 'vitest'
import { LoomError, type LoomErrorCode } from '../errors'
import type { DryRunner, StepDispatcher, WorkerTarget } from '../ports'
import type { Candidate, DispatchStepRequest, DryRunRequest, MigrationAnnouncement } from '../schemas'

/** A worker that records what Loom sends it; tests decide how it answers. */
export interface FakeWorker {
  dispatcher: StepDispatcher
  dryRunner: DryRunner
  /** Every dispatch received, in order. */
  dispatched: Array<{ target: WorkerTarget; request: DispatchStepRequest }>
  dryRuns: DryRunRequest[]
  /** While set, dispatches throw this error (the worker is down). */
  failDispatch: Error | undefined
  /** Called inside each dispatch before it returns (a worker that reports at once). */
  onDispatch: ((request: DispatchStepRequest) => Promise<void> | void) | undefined
  /** The step names dispatched for a run, in order. */
  stepsOf(runId: string): string[]
}

export function fakeWorker(): FakeWorker {
  const worker: FakeWorker = {
    dispatched: [],
    dryRuns: [],
    failDispatch: undefined,
    onDispatch: undefined,
    stepsOf: (runId) => worker.dispatched.filter((d) => d.request.runId === runId).map((d) => d.request.stepName),
    dispatcher: {
      async dispatch(target, request) {
        if (worker.failDispatch) throw worker.failDispatch
        worker.dispatched.push({ target, request: structuredClone(request) })
        await worker.onDispatch?.(request)
      },
    },
    dryRunner: {
      async dryRun(_target, request) {
        worker.dryRuns.push(structuredClone(request))
        return {
          steps: request.steps.map((step) => ({
            stepName: step.name,
            skipped: false,
            files: [
              {
                path: `apps/${request.candidate.id}/values.yaml`,
                repo: 'gitops',
                before: 'chart: generic\n',
                after: `chart: ${request.candidate.id}\n`,
              },
            ],
          })),
        }
      },
    },
  }
  return worker
}

/** Polls `probe` until it stops throwing (bounded), then returns its value. */
export async function eventually<T>(probe: () => Promise<T> | T, { timeoutMs = 15_000, intervalMs = 20 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await probe()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
    }
  }
}

/** Asserts that `promise` rejects with a LoomError of `code`; returns the error for further checks. */
export async function expectLoomError(promise: Promise<unknown>, code: LoomErrorCode): Promise<LoomError> {
  let caught: unknown
  try {
    await promise
  } catch (error) {
    caught = error
  }
  expect(LoomError.is(caught), `expected a LoomError "${code}", got ${String(caught)}`).toBe(true)
  expect((caught as LoomError).code).toBe(code)
  return caught as LoomError
}

/** A migration announcement for tests: `steps` names the steps, `manual` marks a manual-review step. */
export function announcement(
  id = 'app-chart',
  options: { steps?: string[]; manual?: string[]; workerUrl?: string; candidates?: Candidate[] } = {},
): MigrationAnnouncement {
  const steps = options.steps ?? ['update-chart', 'open-pr']
  return {
    id,
    name: `Migration ${id}`,
    description: 'Move applications from the generic chart to their own chart',
    workerUrl: options.workerUrl ?? 'http://127.0.0.1:9/worker',
    steps: steps.map((name) => {
      const config: Record<string, string> = options.manual?.includes(name)
        ? { type: 'manual-review', instructions: 'Check the diff' }
        : { chart: 'app' }
      return { name, workerApp: 'charts', description: `Step ${name}`, config }
    }),
    ...(options.candidates ? { candidates: options.candidates } : {}),
  }
}

/** `n` candidates `svc-0 … svc-(n-1)` with a little metadata. */
export function candidates(n: number, prefix = 'svc'): Candidate[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}-${i}`,
    kind: 'application',
    metadata: { team: i % 2 === 0 ? 'payments' : 'search', repoName: `acme/${prefix}-${i}` },
  }))
}
