import type { ActivityEntry, MigrationStore } from '../ports'
import { STATUS_RULES, candidateStatusOf } from '../rules'
import type { CandidateStatus, LoomEvent } from '../schemas'

/** How many entries one read of the log takes. */
const PAGE = 200
/** How many pages a subscriber catching up is given per read, before the live subscribers' turn. */
const REPLAY_PAGES = 5
/** How long a replay waits, at most, for a page's deliveries to be sent (a stalled client is not waited for longer). */
const REPLAY_DRAIN_MS = 5_000
/** After a failed read, the next try waits this long, doubling up to MAX_RETRY_MS. */
const FIRST_RETRY_MS = 250
const MAX_RETRY_MS = 5_000

const ACTIVITY_ID = /^[0-9]{1,30}$/

/**
 * Orders two ids of the activity log: negative when `a` was written before `b`. Ids are
 * decimal digits and may pass 2^53, so they compare as big integers.
 */
export function compareActivityIds(a: string, b: string): number {
  const [x, y] = [BigInt(a), BigInt(b)]
  return x < y ? -1 : x > y ? 1 : 0
}

/** Whether `id` can be an id of the activity log (a `Last-Event-ID` may be anything). */
export function isActivityId(id: unknown): id is string {
  return typeof id === 'string' && ACTIVITY_ID.test(id)
}

export interface SubscribeOptions {
  /**
   * Deliver the entries after this id first (an id from an earlier event: `Last-Event-ID`),
   * then every change from then on. An id that is not one of the log's is ignored.
   */
  after?: string
  /**
   * Called once the subscription is in place (after the entries since `after`): every change
   * from then on reaches the listener.
   */
  onReady?: () => void
}

interface Subscriber {
  listener: (event: LoomEvent) => unknown
  /** The last entry it was given (or its `after`): it is given only entries after this one. */
  last?: string
  /** True while it is still being given the entries the live read has passed (it came with `after`). */
  replaying: boolean
  onReady?: () => void
}

/**
 * The changes of every process that shares the store, in the order of the log, once each:
 * `Loom.subscribe`. One reader follows the log for all of this Loom's subscribers, from the
 * newest entry when the first subscribes; the store wakes it when entries are added
 * (`watchActivity`), and it reads from its cursor until the log has nothing more. A subscriber
 * with `after` is given the entries it missed first, a few pages per read, up to the reader's
 * cursor, and joins it there. Reads are serialized, and each subscriber keeps the last entry it
 * was given, so entries reach each listener in log order, never twice (an `after` the reader has
 * not reached yet, from a replica further on, included).
 */
export function activityFeed(store: MigrationStore, onError: (error: unknown) => void) {
  const subscribers = new Set<Subscriber>()
  /** The last entry the live read has passed; undefined before the first read, or on an empty log. */
  let head: string | undefined
  let started = false
  /** Grows each time the last subscriber leaves: a read begun before then stops at its next step. */
  let generation = 0
  let unwatch: (() => void) | undefined
  let running = false
  let again = false
  let retryMs = FIRST_RETRY_MS
  let retry: ReturnType<typeof setTimeout> | undefined

  /** Hands `entry` to `subscriber` unless it had it; what its listener returns (a promise, maybe). */
  const deliver = (subscriber: Subscriber, entry: ActivityEntry): unknown => {
    if (!subscribers.has(subscriber)) return undefined
    if (subscriber.last !== undefined && compareActivityIds(entry.id, subscriber.last) <= 0) return undefined
    subscriber.last = entry.id
    const event = eventOf(entry)
    if (!event) return undefined
    try {
      return subscriber.listener(event)
    } catch (error) {
      onError(error)
      return undefined
    }
  }

  /**
   * Gives `subscriber` the entries after its last one up to `head`, the ones the live read has
   * passed, at most REPLAY_PAGES pages per read so that a client far behind does not hold up
   * the live ones, and waiting after each page (up to REPLAY_DRAIN_MS) for what its listener
   * returned, so that a stream is not handed more than it can send. True once it has caught up.
   */
  const replay = async (subscriber: Subscriber, at: number): Promise<boolean> => {
    for (let pages = 0; pages < REPLAY_PAGES; pages++) {
      const cursor = subscriber.last!
      if (head === undefined || compareActivityIds(cursor, head) >= 0 || !subscribers.has(subscriber)) return true
      const page = await store.listActivity({ after: cursor, limit: PAGE })
      if (at !== generation) return true
      const sent: unknown[] = []
      for (const entry of page) {
        if (compareActivityIds(entry.id, head) > 0) break
        sent.push(deliver(subscriber, entry))
      }
      await drained(sent)
      if (page.length < PAGE || compareActivityIds(subscriber.last!, head) >= 0) return true
    }
    return false
  }

  const read = async (at: number) => {
    if (!started) {
      // The cursor starts at the newest entry: a subscriber sees what happens from now on.
      const newest = (await store.listActivity({ limit: 1, newest: true }))[0]?.id
      if (at !== generation) return
      head = newest
      started = true
    }
    for (const subscriber of subscribers) {
      if (subscriber.replaying) {
        // Still behind: it goes on at the next read, after the live subscribers have theirs.
        if (!(await replay(subscriber, at))) {
          again = true
          continue
        }
        if (at !== generation) return
        subscriber.replaying = false
      }
      const ready = subscriber.onReady
      if (ready) {
        delete subscriber.onReady
        try {
          ready()
        } catch (error) {
          onError(error)
        }
      }
    }
    for (;;) {
      const page = await store.listActivity({ limit: PAGE, ...(head === undefined ? {} : { after: head }) })
      if (at !== generation) return
      for (const entry of page) {
        for (const subscriber of subscribers) if (!subscriber.replaying) deliver(subscriber, entry)
        head = entry.id
      }
      if (page.length < PAGE) return
    }
  }

  /** Reads until nothing is left; a wake-up during a read makes it read once more. */
  const pump = async () => {
    if (running) {
      again = true
      return
    }
    if (subscribers.size === 0) return
    running = true
    const at = generation
    try {
      do {
        again = false
        await read(at)
      } while (again && subscribers.size > 0 && at === generation)
      retryMs = FIRST_RETRY_MS
    } catch (error) {
      // The store is away: the cursor stays where it was, so the next read misses nothing.
      onError(error)
      if (subscribers.size > 0 && at === generation) {
        if (retry) clearTimeout(retry)
        retry = setTimeout(() => {
          retry = undefined
          void pump()
        }, retryMs)
        ;(retry as { unref?: () => void }).unref?.()
        retryMs = Math.min(retryMs * 2, MAX_RETRY_MS)
      }
    } finally {
      running = false
    }
    // A subscriber that came while a read of an earlier generation was finishing starts now.
    if (at !== generation && subscribers.size > 0) void pump()
  }

  const stop = () => {
    generation++
    unwatch?.()
    unwatch = undefined
    if (retry) clearTimeout(retry)
    retry = undefined
    retryMs = FIRST_RETRY_MS
    started = false
    head = undefined
  }

  return {
    subscribe(listener: (event: LoomEvent) => unknown, options: SubscribeOptions = {}): () => void {
      const subscriber: Subscriber = { listener, replaying: false }
      if (isActivityId(options.after)) {
        subscriber.last = options.after
        subscriber.replaying = true
      }
      if (options.onReady) subscriber.onReady = options.onReady
      subscribers.add(subscriber)
      unwatch ??= store.watchActivity(() => void pump())
      void pump()
      return () => {
        if (subscribers.delete(subscriber) && subscribers.size === 0) stop()
      }
    },
  }
}

/** Waits for the promises among `results`, but not longer than REPLAY_DRAIN_MS. */
async function drained(results: unknown[]): Promise<void> {
  const promises = results.filter((r): r is Promise<unknown> => typeof (r as Promise<unknown> | undefined)?.then === 'function')
  if (promises.length === 0) return
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, REPLAY_DRAIN_MS)
  })
  await Promise.race([Promise.allSettled(promises), timeout])
  clearTimeout(timer)
}

/**
 * The event a subscriber is given for an entry of the log, with the entry's id, actor and
 * attempt; undefined for an entry no event stands for.
 */
function eventOf(entry: ActivityEntry): LoomEvent | undefined {
  const { id, at, actor, migrationId, runId, candidateId, attempt, detail } = entry
  const base = { id, migrationId, at, actor }
  switch (entry.type) {
    case 'migration.announced':
      return { type: 'migration.updated', ...base }
    case 'migration.deleted':
      return { type: 'migration.deleted', ...base }
    case 'candidates.submitted':
      return { type: 'candidates.submitted', ...base, count: Number(detail.count ?? 0) }
    case 'candidates.patched':
      return { type: 'candidates.patched', ...base, upserted: Number(detail.upserted ?? 0), removed: Number(detail.removed ?? 0) }
  }
  if (runId === undefined || candidateId === undefined) return undefined
  const run = { ...base, runId, candidateId, ...(attempt === undefined ? {} : { attempt }) }
  switch (entry.type) {
    case 'step.dispatched':
      return { type: 'step.dispatched', ...run, step: Number(detail.step) }
    case 'step.reported': {
      const { stepName, success, done, ...rest } = detail
      const metadata: Record<string, string> = {}
      for (const [key, value] of Object.entries(rest)) if (typeof value === 'string') metadata[key] = value
      const result = { stepName: String(stepName), candidate: { id: candidateId }, success: success === true }
      return {
        type: 'step.reported',
        ...run,
        result: Object.keys(metadata).length > 0 ? { ...result, metadata } : result,
        done: done === true,
      }
    }
  }
  const action = entry.type.slice('run.'.length) as keyof typeof STATUS_RULES
  const rule = STATUS_RULES[action]
  if (!rule) return undefined
  // Every action but a cancel is allowed from one status; a cancel's entry says which it was made from.
  const from = rule.from as readonly CandidateStatus[]
  const previous = from.length === 1 ? from[0]! : ((detail.previous as CandidateStatus | undefined) ?? from[from.length - 1]!)
  return { type: 'run.status', ...run, status: candidateStatusOf(rule.to), previous }
}
