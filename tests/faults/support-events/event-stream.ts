/**
 * A reader of `GET /events` as a browser's EventSource would be: one request, optionally with
 * `Last-Event-ID`, whose messages it keeps in the order they came, each with the moment this
 * process read it, so a test can say how long a change took to arrive, and whether it came once.
 */
import type { LoomEvent } from '@loom/core'
import { pollUntil } from '../support-temporal/processes'

export interface StreamedEvent {
  /** The SSE `id:` (the activity entry's id). */
  id: string
  /** The SSE `event:`. */
  type: string
  data: LoomEvent
  /** When this process read it (`Date.now()`). */
  receivedAt: number
}

export interface EventStream {
  /** Every event so far, in the order the stream gave them. */
  readonly events: readonly StreamedEvent[]
  /** When the `: connected` comment came, if it has. */
  connectedAt(): number | undefined
  /** The first event that matches, waiting up to `ms` for it; undefined when none came in time. */
  next(matches: (event: StreamedEvent) => boolean, ms: number): Promise<StreamedEvent | undefined>
  /** Every event so far that matches. */
  all(matches: (event: StreamedEvent) => boolean): StreamedEvent[]
  /** True once the response has ended (its server went away). */
  ended(): boolean
  close(): Promise<void>
}

/** Opens `url` and resolves once the stream says `: connected` (within `connectMs`), or rejects saying what it got. */
export async function openEventStream(url: string, options: { lastEventId?: string; connectMs?: number } = {}): Promise<EventStream> {
  const abort = new AbortController()
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', ...(options.lastEventId ? { 'last-event-id': options.lastEventId } : {}) },
    signal: abort.signal,
  })
  if (response.status !== 200 || !response.body) throw new Error(`GET ${url} answered ${response.status}`)
  const events: StreamedEvent[] = []
  let connectedAt: number | undefined
  let ended = false
  const source = response.body.pipeThrough(new TextDecoderStream()).getReader()
  const pump = (async () => {
    let buffer = ''
    try {
      for (;;) {
        const { done, value } = await source.read()
        if (done) return
        const receivedAt = Date.now()
        buffer += value
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          if (block.split('\n').includes(': connected')) connectedAt ??= receivedAt
          const data = field(block, 'data')
          if (data !== undefined)
            events.push({ id: field(block, 'id') ?? '', type: field(block, 'event') ?? '', data: JSON.parse(data), receivedAt })
        }
      }
    } catch {
      // The connection broke (the server was killed, or close() aborted it): the stream has ended.
    } finally {
      ended = true
    }
  })()
  const stream: EventStream = {
    events,
    connectedAt: () => connectedAt,
    async next(matches, ms) {
      await pollUntil(
        () => events.some(matches),
        ms,
        () => ended,
      )
      return events.find(matches)
    },
    all: (matches) => events.filter(matches),
    ended: () => ended,
    async close() {
      abort.abort()
      await pump
    },
  }
  const connectMs = options.connectMs ?? 10_000
  if (
    !(await pollUntil(
      () => connectedAt !== undefined,
      connectMs,
      () => ended,
    ))
  ) {
    await stream.close()
    throw new Error(`GET ${url} did not say ": connected" within ${connectMs} ms (${events.length} events, ended: ${ended})`)
  }
  return stream
}

function field(block: string, name: string): string | undefined {
  return block
    .split('\n')
    .find((line) => line.startsWith(`${name}: `))
    ?.slice(name.length + 2)
}
