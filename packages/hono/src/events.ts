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
 * nothing. The subscription lasts while a stream is open and `replayWindowMs` after the
 * last one closes (long enough for a reconnect), then ends. Event ids are
 * `{epoch}-{n}`, with a new epoch for each subscription: an id from before a gap, or from
 * another app instance, replays nothing rather than the wrong events.
 */
export function eventHub(loom: Loom, replayWindowMs: number) {
  const history: Array<{ n: number; event: LoomEvent }> = []
  const sinks = new Set<Sink>()
  let epoch = ''
  let n = 0
  let unsubscribe: (() => void) | undefined
  let idle: ReturnType<typeof setTimeout> | undefined

  const subscribe = () => {
    epoch = crypto.randomUUID().slice(0, 8)
    history.length = 0
    unsubscribe = loom.subscribe((event) => {
      n++
      history.push({ n, event })
      if (history.length > HISTORY) history.shift()
      for (const sink of sinks) sink(`${epoch}-${n}`, event)
    })
  }

  const release = () => {
    idle = undefined
    if (sinks.size > 0) return
    unsubscribe?.()
    unsubscribe = undefined
    history.length = 0
  }

  return {
    /** Adds a sink; returns the events after `lastEventId` (when it is of this epoch) and the remover. */
    attach(sink: Sink, lastEventId: string | undefined) {
      if (idle) clearTimeout(idle)
      idle = undefined
      if (!unsubscribe) subscribe()
      sinks.add(sink)
      const [from, seen] = (lastEventId ?? '').split('-')
      const after = from === epoch ? Number(seen) : Number.NaN
      const missed = Number.isInteger(after)
        ? history.filter((h) => h.n > after).map((h) => ({ id: `${epoch}-${h.n}`, event: h.event }))
        : []
      const detach = () => {
        if (!sinks.delete(sink) || sinks.size > 0) return
        if (replayWindowMs <= 0) release()
        else {
          idle = setTimeout(release, replayWindowMs)
          // Where timers can keep a process alive (Node, Bun), this one should not.
          ;(idle as { unref?: () => void }).unref?.()
        }
      }
      return { missed, detach }
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
      chain = chain
        .then(() => stream.write(text))
        .then(
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
