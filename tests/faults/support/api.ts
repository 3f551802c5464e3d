/** Loom's HTTP API as the fault tests use it: the calls, timed, and the bounded waits on their answers. */
import { STEP_NAMES, WORKER_APP } from './log'

export interface Answer<T = any> {
  status: number
  body: T
  ms: number
}

/** One call; a call that does not answer in 30 s is cut (and fails the request-time bound of every test). */
export async function call<T = any>(baseUrl: string, method: string, path: string, body?: unknown): Promise<Answer<T>> {
  const started = Date.now()
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  })
  const text = await response.text()
  let parsed: unknown = text
  try {
    parsed = text ? JSON.parse(text) : undefined
  } catch {}
  return { status: response.status, body: parsed as T, ms: Date.now() - started }
}

async function ok<T = any>(baseUrl: string, method: string, path: string, body?: unknown): Promise<T> {
  const answer = await call<T>(baseUrl, method, path, body)
  if (answer.status >= 300) throw new Error(`${method} ${path} answered ${answer.status}: ${JSON.stringify(answer.body)}`)
  return answer.body
}

export interface RunsOptions {
  migrationId: string
  /** How many candidates are run, all executed at once. */
  count: number
  /** How many more candidates are announced without being run (for `executeRuns` later). */
  spare?: number
  /** Where Loom dispatches the steps. */
  workerUrl: string
  /** Config of every step (`reportAfterMs` for the counting worker, `timeout` for Loom). */
  config?: Record<string, string>
}

/** The id of the `n`th candidate (from 1) of a migration the suite announces. */
export const candidateId = (n: number) => `c${String(n).padStart(2, '0')}`

/** Announces a 3-step migration with `count` (+ `spare`) candidates, queues `count` of them and executes those all at once; returns their run ids. */
export async function launchRuns(baseUrl: string, options: RunsOptions): Promise<string[]> {
  const { migrationId, count, spare = 0, workerUrl, config } = options
  await ok(baseUrl, 'POST', '/registry/announce', {
    id: migrationId,
    name: `Faults: ${migrationId}`,
    workerUrl,
    steps: STEP_NAMES.map((name) => ({ name, workerApp: WORKER_APP, ...(config ? { config } : {}) })),
    candidates: Array.from({ length: count + spare }, (_, i) => ({ id: candidateId(i + 1) })),
  })
  return executeRuns(
    baseUrl,
    migrationId,
    Array.from({ length: count }, (_, i) => candidateId(i + 1)),
  )
}

/** Queues each candidate, then executes them all at once; returns their run ids. */
export async function executeRuns(baseUrl: string, migrationId: string, candidateIds: string[]): Promise<string[]> {
  const runIds: string[] = []
  for (const id of candidateIds) {
    runIds.push((await ok<{ runId: string }>(baseUrl, 'POST', `/migrations/${migrationId}/queue`, { candidateId: id })).runId)
  }
  await Promise.all(runIds.map((runId) => ok(baseUrl, 'POST', `/runs/${runId}/execute`)))
  return runIds
}

type Status = 'not_started' | 'queued' | 'running' | 'completed'

/** The status of every candidate of the migration. */
async function statuses(baseUrl: string, migrationId: string): Promise<Map<string, Status>> {
  const list = await ok<Array<{ id: string; status: Status }>>(baseUrl, 'GET', `/migrations/${migrationId}/candidates`)
  return new Map(list.map((c) => [c.id, c.status]))
}

/** `GET /status/{runId}` (undefined when Loom does not answer 200). */
export async function runStatus(
  baseUrl: string,
  runId: string,
): Promise<
  | { runtimeStatus: string; result: { results: Array<{ stepName: string; success: boolean; metadata?: Record<string, string> }> } }
  | undefined
> {
  const answer = await call(baseUrl, 'GET', `/status/${runId}`)
  return answer.status === 200 ? answer.body : undefined
}

/** Polls `probe` every `everyMs` until it returns a value or `timeoutMs` passes; then undefined. Errors count as "not yet". */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 250,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined && value !== false) return value
    } catch {}
    if (Date.now() >= deadline) return undefined
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/**
 * Waits, at most `boundMs`, for every run of the migration to end (no candidate `queued` or
 * `running`); returns how long that took, or undefined when the bound passed first.
 */
export async function allEnded(baseUrl: string, migrationId: string, boundMs: number, since = Date.now()): Promise<number | undefined> {
  const ended = await eventually(
    async () => {
      const all = [...(await statuses(baseUrl, migrationId)).values()]
      return all.every((s) => s === 'completed' || s === 'not_started') ? true : undefined
    },
    boundMs - (Date.now() - since),
    500,
  )
  return ended ? Date.now() - since : undefined
}

export interface Sample {
  at: number
  ms: number
  status?: number
  error?: string
}

/** Calls `path` every `everyMs` (without waiting for the previous call), timing each answer, until `stop`. */
export function prober(baseUrl: string, path: string, everyMs = 250) {
  const samples: Sample[] = []
  const pending = new Set<Promise<void>>()
  const timer = setInterval(() => {
    const at = Date.now()
    const done = call(baseUrl, 'GET', path)
      .then((answer) => void samples.push({ at, ms: answer.ms, status: answer.status }))
      .catch((error: unknown) => void samples.push({ at, ms: Date.now() - at, error: (error as Error).message }))
      .finally(() => pending.delete(done))
    pending.add(done)
  }, everyMs)
  return {
    samples,
    /** Stops probing and resolves with every sample once the calls in flight have answered (30 s at most each). */
    async stop(): Promise<Sample[]> {
      clearInterval(timer)
      await Promise.all(pending)
      return samples
    },
  }
}
