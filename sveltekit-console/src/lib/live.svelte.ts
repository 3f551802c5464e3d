/**
 * Live updates: one `EventSource` on `/api/events` for the whole console, shared by every
 * page that listens. The browser reconnects by itself (sending `Last-Event-ID`, so the
 * server replays what was missed); `live.state` says whether the stream is up.
 */
import { LOOM_EVENT_TYPES, type LoomEvent } from '@loom/core'
import { invalidate } from '$app/navigation'
import { navigating } from '$app/state'

type Listener = (event: LoomEvent) => void

export const live = $state<{ state: 'connecting' | 'open' | 'closed' }>({ state: 'closed' })

const listeners = new Set<Listener>()
let source: EventSource | undefined

function connect() {
  if (source || typeof EventSource === 'undefined') return
  live.state = 'connecting'
  source = new EventSource('/api/events')
  source.onopen = () => (live.state = 'open')
  source.onerror = () => (live.state = source?.readyState === EventSource.CLOSED ? 'closed' : 'connecting')
  for (const type of LOOM_EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      let event: LoomEvent
      try {
        event = JSON.parse((message as MessageEvent<string>).data) as LoomEvent
      } catch {
        return
      }
      for (const listener of listeners) listener(event)
    })
  }
}

/** Calls `listener` for every change until the returned function is called. */
export function onLoomEvent(listener: Listener): () => void {
  listeners.add(listener)
  connect()
  return () => listeners.delete(listener)
}

/** Opens the stream (the layout does this once, so the indicator shows on every page). */
export function startLive(): void {
  connect()
}

/**
 * A debounced `invalidate(dependency)` for pages that refresh on events. It never runs while
 * the browser is navigating (the next page loads fresh data anyway, and an invalidation
 * then would supersede the navigation), and `stop` cancels a pending one.
 */
export function refresher(dependency: string, delayMs = 150) {
  let timer: ReturnType<typeof setTimeout> | undefined
  return {
    soon() {
      clearTimeout(timer)
      timer = setTimeout(() => {
        if (!navigating.to) void invalidate(dependency)
      }, delayMs)
    },
    stop() {
      clearTimeout(timer)
    },
  }
}
