import { afterEach, expect } from 'vitest'
import { LoomError, type LoomErrorCode } from '../errors'
import type { DryRunner, StepDispatcher, WorkerTarget } from '../ports'
import type { Candidate, DispatchStepRequest, DryRunFile, DryRunRequest, MigrationAnnouncement } from '../schemas'
import { isManualReview } from '../steps'

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

/**
 * How a scripted worker answers a request: `accept` it (a dry run answers its diffs), refuse
 * it with that code, `crash` (an HTTP worker answers 500, an MQTT handler throws), stay
 * `silent` (never answers). Dry runs only (a dispatch accepts): answer something that is not a
 * `DryRunResult` (`malformed`), or the accepted answer's entries in reverse order plus one
 * for a step not asked about (`scrambled`).
 */
export type WorkerAnswer =
  | 'accept'
  | 'invalid'
  | 'unauthorized'
  | 'not_found'
  | 'too_large'
  | 'conflict'
  | 'crash'
  | 'silent'
  | 'malformed'
  | 'scrambled'

/** The refusals a worker can answer, each with the code of the same name. */
const WORKER_REFUSALS = ['invalid', 'unauthorized', 'not_found', 'too_large', 'conflict'] as const

/**
 * The behaviour behind the fake worker endpoints of `dispatcherContract` and
 * `dryRunnerContract`: a transport's fixture puts one endpoint per worker app on the
 * transport (an HTTP handler, an MQTT receiver) and has it call `dispatch` or `dryRun`,
 * answering what they resolve to, or the refusal they throw: a `LoomError` is a refusal with
 * its code, any other error the worker crashing. The suites decide how each app answers.
 */
export interface ScriptedWorker {
  /** How each worker app answers; an app not listed accepts. */
  answers: Record<string, WorkerAnswer>
  /** Step names each worker app's dry run handles; by default the request's steps of that app that are not manual review. */
  handles: Record<string, string[]>
  /** Every dispatch an endpoint received, whatever it answered, in order. */
  dispatches: Array<{ workerApp: string; request: DispatchStepRequest }>
  /** Every dry run an endpoint received, whatever it answered, in order. */
  dryRuns: Array<{ workerApp: string; request: DryRunRequest }>
  /** Receives a dispatch for `workerApp`: resolves when accepted, throws the refusal. */
  dispatch(workerApp: string, request: DispatchStepRequest): Promise<void>
  /** Receives a dry run for `workerApp`: resolves with its answer, throws the refusal. */
  dryRun(workerApp: string, request: DryRunRequest): Promise<unknown>
  /** Ends every silent wait (with an error), so that endpoints can be closed. */
  release(): void
}

/** The diff a scripted worker app answers for a step it handles. */
export function scriptedDiff(workerApp: string, candidateId: string, stepName: string): DryRunFile {
  return { path: `apps/${candidateId}/${stepName}.yaml`, repo: 'gitops', before: 'chart: generic\n', after: `chart: ${workerApp}\n` }
}

/** A fresh scripted worker whose every app accepts. */
function scriptedWorker(): ScriptedWorker {
  const waits = new Set<() => void>()
  const answer = async (workerApp: string, what: string): Promise<WorkerAnswer> => {
    const how = worker.answers[workerApp] ?? 'accept'
    if (how === 'crash') throw new Error(`worker app ${workerApp} crashed on the ${what}`)
    if (how === 'silent') {
      await new Promise<void>((_, reject) => waits.add(() => reject(new Error(`worker app ${workerApp} was released`))))
    }
    if ((WORKER_REFUSALS as readonly string[]).includes(how)) {
      throw new LoomError(how as LoomErrorCode, `worker app ${workerApp} refuses the ${what} (${how})`)
    }
    return how
  }
  const worker: ScriptedWorker = {
    answers: {},
    handles: {},
    dispatches: [],
    dryRuns: [],
    async dispatch(workerApp, request) {
      worker.dispatches.push({ workerApp, request: structuredClone(request) })
      await answer(workerApp, 'dispatch')
    },
    async dryRun(workerApp, request) {
      worker.dryRuns.push({ workerApp, request: structuredClone(request) })
      const how = await answer(workerApp, 'dry run')
      if (how === 'malformed') return { steps: [{ stepName: request.steps[0]?.name ?? 'none' }] }
      const handled =
        worker.handles[workerApp] ?? request.steps.filter((s) => s.workerApp === workerApp && !isManualReview(s)).map((s) => s.name)
      const steps = request.steps.map((step) =>
        handled.includes(step.name)
          ? { stepName: step.name, skipped: false, files: [scriptedDiff(workerApp, request.candidate.id, step.name)] }
          : { stepName: step.name, skipped: true },
      )
      if (how !== 'scrambled') return { steps }
      return {
        steps: [
          ...steps.reverse(),
          { stepName: 'not-asked', skipped: false, files: [scriptedDiff(workerApp, request.candidate.id, 'not-asked')] },
        ],
      }
    },
    release() {
      for (const end of waits) end()
      waits.clear()
    },
  }
  return worker
}

/**
 * What a transport's factory in `dispatcherContract` and `dryRunnerContract` is given: build
 * the transport, and on it one fake worker endpoint per app of `workerApps` (no other app
 * has one) that answers through `worker`.
 */
export interface TransportFixture {
  worker: ScriptedWorker
  /** The worker apps that have an endpoint. */
  workerApps: string[]
  /** The token the endpoints require (refusing others as `unauthorized`, as `@loom/worker` does); none when absent. */
  workerToken?: string
  /** The token the transport sends; none when absent. */
  token?: string
  /** How long the transport waits for an endpoint's answer. */
  timeoutMs: number
}

/**
 * The `open` of a transport suite: builds the transport with a fresh scripted worker on
 * `defaults` overridden by `fixture`, and closes everything it opened after each test (the
 * worker's silent waits first, so receivers can stop). Call it inside the suite's `describe`.
 */
export function transportUnderTest<T extends { close?: () => Promise<void> }>(
  factory: (fixture: TransportFixture) => Promise<T>,
  defaults: Pick<TransportFixture, 'workerApps' | 'timeoutMs'>,
): (fixture?: Partial<Pick<TransportFixture, 'workerApps' | 'token' | 'workerToken'>>) => Promise<T & { worker: ScriptedWorker }> {
  const closers: Array<() => Promise<void>> = []
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((close) => close()))
  })
  return async (fixture = {}) => {
    const worker = scriptedWorker()
    const built = await factory({ worker, ...defaults, ...fixture })
    closers.push(async () => {
      worker.release()
      await built.close?.()
    })
    return { ...built, worker }
  }
}
