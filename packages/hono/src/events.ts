import type { Loom, LoomEvent } from '@loom/core'
import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'

/** Events kept for clients that reconnect with `Last-Event-ID`. */
const HISTORY = 1000
/** A client this many writes behind is dropped; it reconnects and catches up from the history. */
const MAX_PENDING_WRITES = 500

type Sink = (id: string, event: LoomEvent) => void

/**
 * One subscription to `loom` shared by every `GET /events` stream of an app, with the
 * recent events numbered so that a client reconnecting with `Last-Event-ID` misses
 * nothing. Event ids are `{instance}-{n}`: an id from another app instance (a restart)
 * replays nothing rather than the wrong events.
 */
export function eventHub(loom: Loom) {
  const instance = crypto.randomUUID().slice(0, 8)
  const history: Array<{ n: number; event: LoomEvent }> = []
  const sinks = new Set<Sink>()
  let n = 0
  let subscribed = false

  // Subscribed on first use, and for good: the history must cover the gap of a reconnect.
  const ensureSubscribed = () => {
    if (subscribed) return
    subscribed = true
    loom.subscribe((event) => {
      n++
      history.push({ n, event })
      if (history.length > HISTORY) history.shift()
      for (const sink of sinks) sink(`${instance}-${n}`, event)
    })
  }

  return {
    /** Adds a sink; returns the events after `lastEventId` (when it is ours) and the remover. */
    attach(sink: Sink, lastEventId: string | undefined) {
      ensureSubscribed()
      sinks.add(sink)
      const [from, seen] = (lastEventId ?? '').split('-')
      const after = from === instance ? Number(seen) : Number.NaN
      const missed = Number.isInteger(after) ? history.filter((h) => h.n > after).map((h) => ({ id: `${instance}-${h.n}`, event: h.event })) : []
      return { missed, detach: () => sinks.delete(sink) }
    },
  }
}

export type EventHub = ReturnType<typeof eventHub>

/**
 * `GET /events`: a server-sent-events stream, one `event: <type>` message per change with
 * the `LoomEvent` as JSON data. A `: connected` comment is written once the subscription
 * is in place (a client may wait for it before acting), then a `: heartbeat` comment every
 * `heartbeatMs` so proxies keep the connection open.
 */
export function eventStream(c: Context, hub: EventHub, heartbeatMs: number): Response {
  return streamSSE(c, async (stream) => {
    let pending = 0
    let chain = Promise.resolve()
    const write = (text: string) => {
      if (stream.aborted || stream.closed) return
      if (pending >= MAX_PENDING_WRITES) {
        stream.abort()
        return
      }
      pending++
      chain = chain.then(() => stream.write(text)).then(
        () => void pending--,
        () => void pending--,
      )
    }
    const send = (id: string, event: LoomEvent) => write(`id: ${id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)

    const ended = new Promise<void>((resolve) => {
      stream.onAbort(resolve)
      c.req.raw.signal?.addEventListener('abort', () => resolve(), { once: true })
    })
    const { missed, detach } = hub.attach(send, c.req.header('last-event-id'))
    const heartbeat = setInterval(() => write(': heartbeat\n\n'), heartbeatMs)
    try {
      write(': connected\nretry: 2000\n\n')
      for (const { id, event } of missed) send(id, event)
      await ended
    } finally {
      clearInterval(heartbeat)
      detach()
    }
  })
}
