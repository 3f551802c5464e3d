/**
 * The console's form actions over the `Loom` interface: Queue, Remove from queue, Execute,
 * Cancel, Approve and Reject. Each answers a message the page shows as a toast (or, without
 * JavaScript, as a banner), and a refused action answers the HTTP status of its `LoomError`
 * code with Loom's own message, so an operator who loses a race reads why.
 */
import { error, fail, type ActionFailure, type RequestEvent } from '@sveltejs/kit'
import { HTTP_STATUS_OF_CODE, LoomError, parseRunId, type Loom, type LoomErrorCode } from '@loom/core'

export interface ActionSuccess {
  ok: true
  action: string
  message: string
  runId?: string
  candidateId?: string
  /** The action was done but what it started went wrong at once (a run failing as it starts): an error toast. */
  failed?: true
}

export interface ActionRefusal {
  ok: false
  action: string
  message: string
  code: LoomErrorCode | 'invalid'
  candidateId?: string
}

/** Runs a Loom call for a load function, turning `not_found` into a 404 page and `unavailable` into a 503. */
export async function loadFrom<T>(call: Promise<T>): Promise<T> {
  try {
    return await call
  } catch (e) {
    if (LoomError.is(e)) error(HTTP_STATUS_OF_CODE[e.code], { message: e.message, code: e.code })
    throw e
  }
}

function field(data: FormData, name: string): string | undefined {
  const value = data.get(name)
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined
}

type Act = (loom: Loom, data: FormData) => Promise<Omit<ActionSuccess, 'ok' | 'action'>>

async function perform(action: string, event: RequestEvent, act: Act): Promise<ActionSuccess | ActionFailure<ActionRefusal>> {
  const data = await event.request.formData()
  const candidateId = field(data, 'candidateId') ?? (field(data, 'runId') ? safeCandidate(field(data, 'runId')!) : undefined)
  try {
    const done = await act(event.locals.loom, data)
    return { ok: true, action, ...done }
  } catch (e) {
    if (LoomError.is(e)) {
      return fail(HTTP_STATUS_OF_CODE[e.code], {
        ok: false,
        action,
        message: e.message,
        code: e.code,
        ...(candidateId ? { candidateId } : {}),
      })
    }
    if (e instanceof MissingField) return fail(400, { ok: false, action, message: e.message, code: 'invalid' })
    throw e
  }
}

class MissingField extends Error {}

function required(data: FormData, name: string): string {
  const value = field(data, name)
  if (!value) throw new MissingField(`${name}: is required`)
  return value
}

function safeCandidate(runId: string): string | undefined {
  try {
    return parseRunId(runId).candidateId
  } catch {
    return undefined
  }
}

function candidateOfRun(runId: string): string {
  try {
    return parseRunId(runId).candidateId
  } catch {
    throw new LoomError('not_found', `run ${runId} not found: not a run id`)
  }
}

/** The actions on a candidate's run; the migration id comes from the route for Queue. */
export const runActions = {
  queue: (event: RequestEvent) =>
    perform('queue', event, async (loom, data) => {
      const migrationId = field(data, 'migrationId') ?? event.params.id ?? safeMigration(event.params.runId)
      if (!migrationId) throw new MissingField('migrationId: is required')
      const candidateId = required(data, 'candidateId')
      const runId = await loom.queue(migrationId, candidateId)
      return { message: `Queued ${candidateId}. Its dry run is ready to preview.`, runId, candidateId }
    }),

  dequeue: (event: RequestEvent) =>
    perform('dequeue', event, async (loom, data) => {
      const runId = required(data, 'runId')
      await loom.dequeue(runId)
      const candidateId = candidateOfRun(runId)
      return { message: `Removed ${candidateId} from the queue.`, runId, candidateId }
    }),

  execute: (event: RequestEvent) =>
    perform('execute', event, async (loom, data) => {
      const runId = required(data, 'runId')
      await loom.execute(runId)
      const candidateId = candidateOfRun(runId)
      const failure = await failedAtOnce(loom, runId)
      if (failure !== undefined) {
        return {
          message: `The run of ${candidateId} failed as it started${failure ? `: ${failure}` : '.'}`,
          runId,
          candidateId,
          failed: true,
        }
      }
      return { message: `Executing ${candidateId}.`, runId, candidateId }
    }),

  cancel: (event: RequestEvent) =>
    perform('cancel', event, async (loom, data) => {
      const runId = required(data, 'runId')
      const reason = field(data, 'reason')
      await loom.cancel(runId, reason ? { reason } : {})
      const candidateId = candidateOfRun(runId)
      return { message: `Cancelled the run of ${candidateId}; it is back to not started.`, runId, candidateId }
    }),

  approve: (event: RequestEvent) => perform('approve', event, (loom, data) => review(loom, data, true)),
  reject: (event: RequestEvent) => perform('reject', event, (loom, data) => review(loom, data, false)),
}

/** How long Execute watches the run it started before it says "Executing". */
const FAILED_AT_ONCE_MS = 300

/**
 * Whether the run just executed ended failed within its first moment (a worker that cannot be
 * reached, a refused dispatch): its error, '' when it gave none, or undefined while it runs.
 */
async function failedAtOnce(loom: Loom, runId: string): Promise<string | undefined> {
  const deadline = Date.now() + FAILED_AT_ONCE_MS
  for (;;) {
    const status = await loom.getRun(runId).then(
      (run) => run.status,
      () => 'not_started' as const,
    )
    if (status !== 'running' && status !== 'queued') {
      if (status === 'completed') return undefined
      const last = (await loom.history(runId).catch(() => undefined))?.attempts.at(-1)
      if (last?.outcome !== 'failed') return undefined
      const step = last.steps.find((s) => s.success === false && typeof s.detail.error === 'string')
      return step ? `${step.stepName}: ${String(step.detail.error)}` : ''
    }
    if (Date.now() >= deadline) return undefined
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function safeMigration(runId: string | undefined): string | undefined {
  if (!runId) return undefined
  try {
    return parseRunId(runId).migrationId
  } catch {
    return undefined
  }
}

async function review(loom: Loom, data: FormData, approved: boolean) {
  const runId = required(data, 'runId')
  const stepName = required(data, 'stepName')
  const candidateId = candidateOfRun(runId)
  const note = field(data, 'note')
  await loom.complete(runId, {
    stepName,
    candidate: { id: candidateId },
    success: approved,
    metadata: { review: approved ? 'approved' : 'rejected', ...(note ? { note: note.slice(0, 2000) } : {}) },
  })
  return {
    message: approved ? `Approved "${stepName}" for ${candidateId}.` : `Rejected "${stepName}": ${candidateId} is back to not started.`,
    runId,
    candidateId,
  }
}
