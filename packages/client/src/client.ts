import {
  LoomError,
  SlugSchema,
  isActivityId,
  parse,
  type ActivityPage,
  type ActivityQueryInput,
  type CancelOptions,
  type Candidate,
  type CandidateQuery,
  type CandidateSearchResult,
  type CandidateWithStatus,
  type Discovery,
  type DryRunResult,
  type ExecuteOptions,
  type HealthReport,
  type Loom,
  type LoomEvent,
  type MigrationAnnouncement,
  type PatchCandidatesRequest,
  type MigrationOverview,
  type RegisteredMigration,
  type RegisterMigrationRequest,
  type RunHistory,
  type RunInfo,
  type RunStatusResponse,
  type StepCompletedEvent,
  type SubscribeOptions,
} from '@loom/core'
import { readEventStream } from './sse'

export interface ClientOptions {
  /** Where the Loom HTTP API is mounted, e.g. `http://localhost:3000/api`. */
  baseUrl: string
  /** Bearer token sent with every request (the operator token, or a worker's token). */
  token?: string
  /** The fetch to use; defaults to the global one. Tests pass `app.request`. */
  fetch?: (input: Request | string | URL, init?: RequestInit) => Response | Promise<Response>
  /** Extra headers sent with every request. */
  headers?: Record<string, string>
  /** First delay before `subscribe` reconnects, doubled up to 30 s; the server's `retry` overrides it. Default 1 s. */
  reconnectDelayMs?: number
  /** Errors the client handles but should not hide (a listener throwing, the event stream failing). Default: console.warn. */
  onError?: (error: unknown) => void
  /**
   * Conditional requests for `listMigrations`, `getMigration`, `listCandidates` and
   * `searchCandidates`: the last `ETag` and body of each URL are kept, the next request of that
   * URL sends `If-None-Match`, and a 304 is answered from the kept body, so an unchanged list
   * is neither serialized by the server nor sent again. The bodies of `maxEntries` URLs (default
   * 16), `maxBytes` characters of JSON in all (default 8 MiB; a larger body is not kept), are
   * kept at most, the least recently used dropped first; `false` (or 0) turns it off.
   */
  conditionalRequests?: false | { maxEntries?: number; maxBytes?: number }
}

/** `Loom` over HTTP. */
export interface LoomClient extends Loom {
  /** Closes the event stream of `subscribe`, if one is open. Requests need no closing. */
  close(): void
}

/** How long requests wait for a new event subscription to be in place before going ahead anyway. */
const SUBSCRIBE_READY_TIMEOUT_MS = 5_000
const MAX_RECONNECT_DELAY_MS = 30_000
const DEFAULT_CONDITIONAL_ENTRIES = 16
const DEFAULT_CONDITIONAL_BYTES = 8 * 1024 * 1024

/** What a conditional GET keeps of a 200: its tag, its text (parsed anew each time, so callers may change what they get) and its total. */
interface Kept {
  etag: string
  text: string
  total: string | null
}

/**
 * The `Loom` interface over HTTP, with fetch alone (no Node built-ins, no EventSource), so
 * it runs in browsers, workers and every server runtime. Each method calls one route of
 * the contract; a failure is the same `LoomError` the server's `Loom` threw, rebuilt from
 * the `{ error, code }` body. A server that cannot be reached, or answers something other
 * than the contract, is `unavailable`.
 *
 * `subscribe` keeps one `GET /events` stream for all listeners, reconnecting with
 * `Last-Event-ID` so that no event is missed across a dropped connection. Requests made
 * through the client after `subscribe` returns wait (up to 5 s) for the stream to be in
 * place, so the events they cause are delivered, as they would be in-process. Unlike an
 * in-process `Loom`, the stream is shared: `after` applies to the call that opens it (a later
 * listener joins it where it is), and `onReady` fires when the server says `: connected`.
 *
 * @example
 * import { createClient } from '@loom/client'
 *
 * const loom = createClient({ baseUrl: 'http://localhost:3000/api', token: process.env.LOOM_TOKEN })
 * const runId = await loom.queue('app-chart', 'billing-api')
 * await loom.execute(runId)
 */
export function createClient(options: ClientOptions): LoomClient {
  const base = options.baseUrl.replace(/\/+$/, '')
  const fetchImpl = options.fetch ?? ((input, init) => fetch(input, init))
  const onError = options.onError ?? ((error: unknown) => console.warn('[loom client]', error))
  const initialDelay = options.reconnectDelayMs ?? 1_000
  const listeners = new Set<(event: LoomEvent) => void>()
  const maxKept = options.conditionalRequests === false ? 0 : (options.conditionalRequests?.maxEntries ?? DEFAULT_CONDITIONAL_ENTRIES)
  if (!Number.isSafeInteger(maxKept) || maxKept < 0) {
    throw new LoomError('invalid', 'conditionalRequests.maxEntries: must be a whole number, 0 or more', {
      details: { field: 'conditionalRequests.maxEntries' },
    })
  }
  const maxBytes = options.conditionalRequests === false ? 0 : (options.conditionalRequests?.maxBytes ?? DEFAULT_CONDITIONAL_BYTES)
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
    throw new LoomError('invalid', 'conditionalRequests.maxBytes: must be a whole number, 0 or more', {
      details: { field: 'conditionalRequests.maxBytes' },
    })
  }
  const kept = new Map<string, Kept>()
  /** Characters of the bodies kept, all together. */
  let keptBytes = 0
  const forget = (path: string) => {
    const entry = kept.get(path)
    if (!entry) return
    kept.delete(path)
    keptBytes -= entry.text.length
  }
  /** Keeps `entry` as the most recently used, within the bounds (a body larger than them is not kept). */
  const keep = (path: string, entry: Kept) => {
    forget(path)
    if (entry.text.length > maxBytes) return
    kept.set(path, entry)
    keptBytes += entry.text.length
    while (kept.size > maxKept || keptBytes > maxBytes) forget(kept.keys().next().value!)
  }
  let stream: { controller: AbortController; ready: Promise<void>; connected: Promise<void> } | undefined

  const headers = (extra: Record<string, string> = {}): Record<string, string> => ({
    ...options.headers,
    ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
    ...extra,
  })

  const send = async (method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<Response> => {
    if (stream) await stream.ready
    try {
      return await fetchImpl(`${base}${path}`, {
        method,
        headers: headers(body === undefined ? extra : { ...extra, 'content-type': 'application/json' }),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
    } catch (error) {
      throw new LoomError('unavailable', `Loom at ${base} could not be reached: ${(error as Error).message}`, { cause: error })
    }
  }

  const call = async (method: string, path: string, body?: unknown): Promise<Response> => {
    const response = await send(method, path, body)
    if (!response.ok) throw await errorOf(response, base)
    return response
  }

  const parsed = <T>(text: string, method: string, path: string): T => {
    try {
      return JSON.parse(text) as T
    } catch (error) {
      throw new LoomError('unavailable', `Loom at ${base} answered ${method} ${path} with a body that is not JSON`, { cause: error })
    }
  }

  const json = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await call(method, path, body)
    return parsed<T>(await response.text(), method, path)
  }

  /**
   * A GET that revalidates what it kept of the URL's last 200: a 304 is answered from it.
   * The kept entry is held from the request on, so a 304 finds it even if it was dropped meanwhile.
   */
  const conditionalGet = async <T>(path: string): Promise<{ value: T; total: string | null }> => {
    if (maxKept === 0) {
      const response = await call('GET', path)
      return { value: parsed<T>(await response.text(), 'GET', path), total: response.headers.get('x-total-count') }
    }
    const last = kept.get(path)
    const response = await send('GET', path, undefined, last ? { 'if-none-match': last.etag } : {})
    if (response.status === 304 && last) {
      await response.body?.cancel()
      // Most recently used last: Map keeps insertion order.
      keep(path, last)
      return { value: parsed<T>(last.text, 'GET', path), total: last.total }
    }
    if (!response.ok) throw await errorOf(response, base)
    const text = await response.text()
    const value = parsed<T>(text, 'GET', path)
    const etag = response.headers.get('etag')
    forget(path)
    if (etag) keep(path, { etag, text, total: response.headers.get('x-total-count') })
    return { value, total: response.headers.get('x-total-count') }
  }

  const none = async (method: string, path: string, body?: unknown): Promise<void> => {
    const response = await call(method, path, body)
    await response.body?.cancel()
  }

  const connect = (after: string | undefined) => {
    const controller = new AbortController()
    let markReady!: () => void
    const ready = new Promise<void>((resolve) => {
      markReady = resolve
    })
    const readyTimer = setTimeout(markReady, SUBSCRIBE_READY_TIMEOUT_MS)
    const isReady = () => {
      clearTimeout(readyTimer)
      markReady()
    }
    // `ready` lets requests go on (after the stream is in place, or it gave up waiting);
    // `connected` is the server saying the subscription is in place, what `onReady` waits for.
    let markConnected!: () => void
    const connected = new Promise<void>((resolve) => {
      markConnected = resolve
    })
    const onComment = (text: string) => {
      if (text !== 'connected') return
      markConnected()
      isReady()
    }
    void (async () => {
      let lastEventId = after
      let delay = initialDelay
      let failures = 0
      while (!controller.signal.aborted) {
        try {
          const response = await fetchImpl(`${base}/events`, {
            headers: headers({ accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) }),
            signal: controller.signal,
          })
          if (!response.ok || !response.body) throw await errorOf(response, base)
          for await (const message of readEventStream(response.body, onComment)) {
            failures = 0
            if (message.retry !== undefined) delay = message.retry
            if (message.id !== undefined) lastEventId = message.id
            if (!message.data) continue
            let event: LoomEvent
            try {
              event = JSON.parse(message.data) as LoomEvent
            } catch {
              continue
            }
            for (const listener of [...listeners]) {
              try {
                listener(event)
              } catch (error) {
                onError(error)
              }
            }
          }
        } catch (error) {
          if (controller.signal.aborted) break
          // One report per streak of failures: a server that is down should not flood the log.
          if (failures++ === 0) onError(error)
        }
        // A first attempt that failed must not hold requests back.
        isReady()
        await sleep(Math.min(delay * 2 ** Math.max(0, failures - 1), MAX_RECONNECT_DELAY_MS), controller.signal)
      }
      isReady()
    })()
    return { controller, ready, connected }
  }

  const stop = () => {
    stream?.controller.abort()
    stream = undefined
  }

  async function listMigrations(): Promise<RegisteredMigration[]>
  async function listMigrations(options: { summary: true }): Promise<MigrationOverview[]>
  async function listMigrations(options?: { summary?: boolean }): Promise<RegisteredMigration[] | MigrationOverview[]>
  async function listMigrations(options: { summary?: boolean } = {}) {
    const { value } = await conditionalGet<{ migrations: RegisteredMigration[] | MigrationOverview[] }>(
      options.summary ? '/migrations?summary=true' : '/migrations',
    )
    return value.migrations
  }

  return {
    announce: (announcement: MigrationAnnouncement) => json<RegisteredMigration>('POST', '/registry/announce', announcement),

    register: (request: RegisterMigrationRequest) => json<RegisteredMigration>('POST', '/migrations', request),

    listMigrations,

    getMigration: async (id: string) => (await conditionalGet<RegisteredMigration>(`/migrations/${segment(id)}`)).value,

    deleteMigration: (id: string) => none('DELETE', `/migrations/${segment(id)}`),

    submitCandidates: (migrationId: string, candidates: Candidate[]) =>
      none('POST', `/migrations/${segment(migrationId)}/candidates`, { candidates }),

    patchCandidates: (migrationId: string, patch: PatchCandidatesRequest) =>
      none('PATCH', `/migrations/${segment(migrationId)}/candidates`, patch),

    openDiscovery: (migrationId: string) => json<Discovery>('POST', `/migrations/${segment(migrationId)}/discoveries`),

    addToDiscovery: (migrationId: string, discoveryId: string, candidates: Candidate[]) =>
      none('POST', `/migrations/${segment(migrationId)}/discoveries/${segment(discoveryId)}/candidates`, { candidates }),

    commitDiscovery: (migrationId: string, discoveryId: string) =>
      none('POST', `/migrations/${segment(migrationId)}/discoveries/${segment(discoveryId)}/commit`),

    listCandidates: async (migrationId: string) =>
      (await conditionalGet<CandidateWithStatus[]>(`/migrations/${segment(migrationId)}/candidates`)).value,

    async getCandidate(migrationId: string, candidateId: string): Promise<CandidateWithStatus> {
      // Checked here as createLoom checks them: an empty id would otherwise reach another route.
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      return json<CandidateWithStatus>('GET', `/migrations/${segment(migrationId)}/candidates/${segment(candidateId)}`)
    },

    async searchCandidates(migrationId: string, query: CandidateQuery): Promise<CandidateSearchResult> {
      // `after` (a cursor) travels with the rest of the query; the server refuses it with `offset`.
      const { value: candidates, total: header } = await conditionalGet<CandidateWithStatus[]>(
        `/migrations/${segment(migrationId)}/candidates${searchOf(query)}`,
      )
      const total = Number(header ?? Number.NaN)
      return { candidates, total: Number.isInteger(total) ? total : candidates.length }
    },

    async queue(migrationId: string, candidateId: string): Promise<string> {
      // Checked here as createLoom checks them: an empty id would otherwise change the route itself.
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      return (await json<{ runId: string }>('POST', `/migrations/${segment(migrationId)}/queue`, { candidateId })).runId
    },

    dequeue: (runId: string) => none('DELETE', `/runs/${segment(runId)}/dequeue`),

    async execute(runId: string, options?: ExecuteOptions): Promise<string> {
      // Without options, no body: what API 0.2 servers expect.
      return (await json<{ runId: string }>('POST', `/runs/${segment(runId)}/execute`, options)).runId
    },

    async cancel(runId: string, options?: CancelOptions): Promise<void> {
      // Without options, no body: what API 0.2 servers expect.
      await none('POST', `/runs/${segment(runId)}/cancel`, options)
    },

    complete: (runId: string, event: StepCompletedEvent) => none('POST', `/event/${segment(runId)}`, event),

    prOpened: (runId: string, event: StepCompletedEvent) => none('POST', `/event/${segment(runId)}/pr-opened`, event),

    getRun: (runId: string) => json<RunInfo>('GET', `/runs/${segment(runId)}`),

    runStatus: (runId: string) => json<RunStatusResponse>('GET', `/status/${segment(runId)}`),

    async activity(migrationId: string, query: ActivityQueryInput = {}): Promise<ActivityPage> {
      // Checked here as createLoom checks it: an empty id would otherwise reach another route.
      parse(SlugSchema, migrationId, 'migrationId')
      return json<ActivityPage>('GET', `/migrations/${segment(migrationId)}/activity${searchOf(query)}`)
    },

    history: (runId: string) => json<RunHistory>('GET', `/runs/${segment(runId)}/history`),

    async dryRun(migrationId: string, candidateId: string): Promise<DryRunResult> {
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      return json<DryRunResult>('POST', `/migrations/${segment(migrationId)}/dry-run`, { candidateId })
    },

    subscribe(listener: (event: LoomEvent) => void, subscribeOptions: SubscribeOptions = {}): () => void {
      listeners.add(listener)
      // One stream serves every listener: `after` is where it starts when this call opens it.
      stream ??= connect(isActivityId(subscribeOptions.after) ? subscribeOptions.after : undefined)
      if (subscribeOptions.onReady) void stream.connected.then(subscribeOptions.onReady)
      return () => {
        listeners.delete(listener)
        if (listeners.size === 0) stop()
      }
    },

    health: () => json<HealthReport>('GET', '/health'),

    close() {
      listeners.clear()
      stop()
    },
  }
}

/** A query string of the fields that are set (`?a=1&b=x`), or nothing when none is. */
function searchOf(query: object | undefined): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) params.set(key, String(value))
  return params.size > 0 ? `?${params}` : ''
}

/**
 * A path segment. `.` and `..` cannot be sent as one (URL parsing resolves them, even
 * percent-encoded); they break the id rules anyway, and the request they turn into
 * reaches no route of the API, which answers 404 as `createLoom` answers `not_found`.
 */
function segment(value: string): string {
  return encodeURIComponent(String(value))
}

/** The `LoomError` an error answer stands for: rebuilt from `{ error, code }`, else `unavailable`. */
async function errorOf(response: Response, base: string): Promise<LoomError> {
  const text = await response.text().catch(() => '')
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  if (typeof body === 'object' && body !== null) {
    const { error, code, ...rest } = body as Record<string, unknown>
    if (typeof error === 'string' && LoomError.isCode(code)) {
      const details: Record<string, unknown> = { httpStatus: response.status }
      for (const key of ['field', 'status', 'dependency']) if (typeof rest[key] === 'string') details[key] = rest[key]
      return new LoomError(code, error, { details })
    }
  }
  return new LoomError('unavailable', `Loom at ${base} answered ${response.status}${text ? `: ${text.slice(0, 300)}` : ''}`, {
    details: { httpStatus: response.status },
  })
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })
}
