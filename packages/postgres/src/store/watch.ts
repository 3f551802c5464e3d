import type { Sql } from 'postgres'
import { isEmbedded } from '../embedded'

/** After LISTEN failed (the database away), the next try waits this long. */
const LISTEN_RETRY_MS = 1_000
/** After a NOTIFY failed, the next try waits this long, doubling up to MAX_NOTIFY_RETRY_MS. */
const FIRST_NOTIFY_RETRY_MS = 100
const MAX_NOTIFY_RETRY_MS = 5_000

/** Who waits for the log's entries, and how they are woken: one per client and schema. */
export interface ActivityHub {
  /** Adds a watcher of the log; returns its remover. */
  watch(watcher: () => void): () => void
  /** Whether anyone watches the log. */
  watched(): boolean
  /** A call of a store on this client added entries: wake this process's watchers and tell the others. */
  wrote(): void
  /** Wakes the watchers in `ms`: a read ended before entries still held back, and no write may come to wake them. */
  wakeSoon(ms: number): void
}

/** One hub per client and schema, so that every store built on the same client wakes the others' watchers. */
const hubs = new WeakMap<object, Map<string, ActivityHub>>()

export function activityHub(sql: Sql<any>, schema: string): ActivityHub {
  let ofClient = hubs.get(sql)
  if (!ofClient) {
    ofClient = new Map()
    hubs.set(sql, ofClient)
  }
  let hub = ofClient.get(schema)
  if (!hub) {
    hub = createHub(sql, schema)
    ofClient.set(schema, hub)
  }
  return hub
}

function createHub(sql: Sql<any>, schema: string): ActivityHub {
  const channel = channelOf(schema)
  const watchers = new Set<() => void>()
  let waking = false
  /** Wakes every watcher once per turn of the event loop, however many wake-ups came. */
  const wake = () => {
    if (waking || watchers.size === 0) return
    waking = true
    queueMicrotask(() => {
      waking = false
      for (const watcher of watchers) watcher()
    })
  }
  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(run, ms)
    ;(timer as { unref?: () => void }).unref?.()
  }
  // The embedded database has one session for all its connections, so a notification would
  // reach whichever connection is reading, and no other process shares it: it wakes in process.
  const embedded = isEmbedded(sql)

  /**
   * NOTIFY, after the writes and outside their transactions: a transaction that notifies takes
   * a lock of the whole database before it commits and holds it until its commit is on disk,
   * which makes concurrent writers commit one at a time (a trigger on the log cost +12 to +85 %
   * a transition in bench/activity.ts). One notification at a time per process instead: writes
   * made while one is on its way are told by the next, so under load a process sends about one
   * per round trip, and each wakes every listener to read from its cursor. One that fails is
   * sent again, later; one lost with its process only delays the readers until the next change
   * anywhere: they read from their cursor and miss nothing.
   */
  let notifying = false
  let pending = false
  let retryMs = FIRST_NOTIFY_RETRY_MS
  const announce = () => {
    pending = true
    if (notifying) return
    notifying = true
    pending = false
    sql.notify(channel, '').then(
      () => {
        notifying = false
        retryMs = FIRST_NOTIFY_RETRY_MS
        if (pending) announce()
      },
      () => {
        notifying = false
        pending = true
        later(retryMs, () => {
          if (pending && !notifying) announce()
        })
        retryMs = Math.min(retryMs * 2, MAX_NOTIFY_RETRY_MS)
      },
    )
  }

  /**
   * The LISTEN that wakes this process for every process's entries. Started by the first
   * watcher and kept while the client lives (one connection of its own): postgres.js listens
   * again after a reconnect, and each time it does the watchers wake, for whatever came while
   * it was away.
   */
  let listening = false
  const listen = () => {
    listening = true
    sql.listen(channel, wake, wake).catch(() => {
      listening = false
      later(LISTEN_RETRY_MS, () => {
        if (watchers.size > 0 && !listening) listen()
      })
    })
  }

  return {
    watch(watcher) {
      const entry = () => watcher()
      watchers.add(entry)
      if (!embedded && !listening) listen()
      return () => {
        watchers.delete(entry)
      }
    },
    watched: () => watchers.size > 0,
    wrote() {
      wake()
      if (!embedded) announce()
    },
    wakeSoon: (ms) => later(ms, wake),
  }
}

/**
 * The channel of a schema's log: `<schema>.activity`, or, for a schema name too long for that to
 * fit PostgreSQL's 63 bytes (a channel is an identifier), `loom.activity.<hash of the name>`.
 */
export function channelOf(schema: string): string {
  const plain = `${schema}.activity`
  if (plain.length <= 63) return plain
  // FNV-1a, 32 bits: stable across processes and versions, which is all a channel name needs.
  let hash = 0x811c9dc5
  for (let i = 0; i < schema.length; i++) hash = Math.imul(hash ^ schema.charCodeAt(i), 0x01000193) >>> 0
  return `loom.activity.${hash.toString(16).padStart(8, '0')}`
}
