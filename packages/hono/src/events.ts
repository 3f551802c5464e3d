import { isActivityId, type Loom, type LoomEvent } from '@loom/core'
import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'

/**
 * A client this many writes behind is dropped; it reconnects with `Last-Event-ID` and catches
 * up from the store. A replay waits for each page to be written, so only live changes can pile up.
 */
const MAX_PENDING_WRITES = 500

/**
 * `GET /events`: a server-sent-events stream of `loom.subscribe`, one `event: <type>` message
 * per entry of the activity log, its `id:` the entry's id and its data the `LoomEvent` as JSON.
 * The log is in the store, so a client that reconnects with `Last-Event-ID`, to this process
 * or to another replica sharing the store, is given every change since that id, then the rest.
 * A `: connected` comment is written once the subscription is in place (a client may wait for
 * it before acting), then a `: heartbeat` comment every `heartbeatMs` so proxies keep the
 * connection open.
 */
export function eventStream(c: Context, loom: Loom, heartbeatMs: number): Response {
  return streamSSE(c, async (stream) => {
    let pending = 0
    let chain = Promise.resolve()
    /** Queues `text`; the promise says when it has been written, which a replay waits for between pages. */
    const write = (text: string): Promise<void> => {
      if (stream.aborted || stream.closed) return chain
      if (pending >= MAX_PENDING_WRITES) {
        stream.abort()
        return chain
      }
      pending++
      chain = chain
        .then(() => stream.write(text))
        .then(
          () => void pending--,
          () => void pending--,
        )
      return chain
    }
    const send = (event: LoomEvent) => write(`id: ${event.id ?? ''}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)

    const ended = new Promise<void>((resolve) => {
      stream.onAbort(resolve)
      c.req.raw.signal?.addEventListener('abort', () => resolve(), { once: true })
    })
    // An id from before the log (API 0.2's `{epoch}-{n}`), or any other text, resumes nothing: the stream starts now.
    const lastEventId = c.req.header('last-event-id')
    // The reconnection delay first: a client dropped while it is still catching up keeps it.
    write('retry: 2000\n\n')
    const unsubscribe = loom.subscribe(send, {
      ...(isActivityId(lastEventId) ? { after: lastEventId } : {}),
      onReady: () => void write(': connected\n\n'),
    })
    const heartbeat = setInterval(() => write(': heartbeat\n\n'), heartbeatMs)
    try {
      await ended
    } finally {
      clearInterval(heartbeat)
      unsubscribe()
    }
  })
}
