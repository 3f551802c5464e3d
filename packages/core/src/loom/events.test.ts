import { describe, expect, it } from 'vitest'
import { memoryStore } from '../memory-store'
import type { MigrationStore } from '../ports'
import type { LoomEvent } from '../schemas'
import { eventually } from '../testing/fakes'
import { activityFeed, compareActivityIds } from './events'

const M = 'app-chart'

async function storeWith(candidates: number) {
  const store = memoryStore()
  await store.upsertMigration({ id: M, name: 'App chart', steps: [{ name: 'bump', workerApp: 'charts' }] }, [
    ...Array.from({ length: candidates }, (_, i) => ({ id: `svc-${i}` })),
  ])
  /** Queues then dequeues each of `ids`: two entries each. */
  const churn = async (ids: number[]) => {
    for (const i of ids) {
      for (const action of ['queue', 'dequeue'] as const) {
        const moved = await store.transition({ migrationId: M, candidateId: `svc-${i}`, action, at: new Date().toISOString() })
        expect(moved.ok).toBe(true)
      }
    }
  }
  return { store, churn }
}

const subscribed = (feed: ReturnType<typeof activityFeed>, after?: string) => {
  const events: LoomEvent[] = []
  const ready = new Promise<void>((resolve) => {
    const stop = feed.subscribe((event) => events.push(event), { onReady: resolve, ...(after === undefined ? {} : { after }) })
    subscriptions.push(stop)
  })
  return { events, ready }
}
const subscriptions: Array<() => void> = []

const idsOf = (events: LoomEvent[]) => events.map((e) => e.id!)
const isOrdered = (ids: string[]) => ids.every((id, i) => i === 0 || compareActivityIds(ids[i - 1]!, id) < 0)

describe('activityFeed', () => {
  it('catches a subscriber up on a long backlog, a few pages per read, while another is live: each gets every entry once, in order', async () => {
    const { store, churn } = await storeWith(50)
    await churn(Array.from({ length: 1_250 }, (_, i) => i % 50))
    const log = await store.listActivity({ limit: 1_000 })
    const from = log[0]!.id // the first queue: 2,499 entries behind
    const feed = activityFeed(store, (error) => {
      throw error
    })
    const live = subscribed(feed)
    await live.ready
    const behind = subscribed(feed, from)
    // Live changes while the backlog is replayed.
    await churn([0, 1, 2])
    await behind.ready
    await churn([3])
    await eventually(() => expect(behind.events).toHaveLength(2_499 + 8))
    await eventually(() => expect(live.events).toHaveLength(8))
    const all = await readAll(store)
    expect(idsOf(behind.events)).toEqual(all.slice(1).map((e) => e.id))
    expect(idsOf(live.events)).toEqual(all.slice(-8).map((e) => e.id))
    expect(isOrdered(idsOf(behind.events))).toBe(true)
    for (const stop of subscriptions.splice(0)) stop()
  })

  it('starts a fresh subscriber at the newest entry after the last one left during a read', async () => {
    const { store, churn } = await storeWith(10)
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const slow: MigrationStore = Object.create(store)
    slow.listActivity = async (query) => {
      const entries = await store.listActivity(query)
      if (query.newest) await held
      return entries
    }
    const feed = activityFeed(slow, (error) => {
      throw error
    })
    const stop = feed.subscribe(() => {})
    stop() // while its first read waits on the store
    await churn([0, 1, 2, 3, 4])
    release()
    await new Promise((resolve) => setTimeout(resolve, 20))
    const fresh = subscribed(feed)
    await fresh.ready
    await churn([5])
    await eventually(() => expect(fresh.events).toHaveLength(2))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(fresh.events.map((e) => (e.type === 'run.status' ? e.candidateId : e.type))).toEqual(['svc-5', 'svc-5'])
    for (const stop of subscriptions.splice(0)) stop()
  })

  it('gives a subscriber whose `after` is ahead of the reader (a replica further on) nothing twice', async () => {
    const { store, churn } = await storeWith(5)
    // A store that never wakes the reader: it reads only when a subscriber comes.
    const deaf: MigrationStore = Object.create(store)
    deaf.watchActivity = () => () => {}
    const feed = activityFeed(deaf, (error) => {
      throw error
    })
    const live = subscribed(feed)
    await live.ready
    await churn([0, 1]) // four entries the reader has not read
    const unread = await store.listActivity({ limit: 10 })
    const ahead = subscribed(feed, unread[1]!.id)
    await ahead.ready
    await eventually(() => expect(live.events).toHaveLength(4))
    expect(idsOf(ahead.events)).toEqual(unread.slice(2).map((e) => e.id))
    for (const stop of subscriptions.splice(0)) stop()
  })

  it('waits for a listener’s promises between the pages of a replay, so a slow stream is not flooded', async () => {
    const { store, churn } = await storeWith(10)
    await churn(Array.from({ length: 750 }, (_, i) => i % 10))
    const feed = activityFeed(store, (error) => {
      throw error
    })
    let inFlight = 0
    let most = 0
    let received = 0
    const ready = new Promise<void>((resolve) => {
      subscriptions.push(
        feed.subscribe(
          () => {
            inFlight++
            most = Math.max(most, inFlight)
            received++
            return new Promise<void>((done) =>
              setTimeout(() => {
                inFlight--
                done()
              }, 1),
            )
          },
          { after: '1', onReady: resolve },
        ),
      )
    })
    await ready
    expect(received).toBe(1_499)
    expect(most).toBeLessThanOrEqual(200)
    for (const stop of subscriptions.splice(0)) stop()
  })

  it('reads again after the store failed, missing nothing', async () => {
    const { store, churn } = await storeWith(3)
    let down = false
    const flaky: MigrationStore = Object.create(store)
    flaky.listActivity = (query) => (down ? Promise.reject(new Error('store: connection refused')) : store.listActivity(query))
    const errors: unknown[] = []
    const feed = activityFeed(flaky, (error) => errors.push(error))
    const live = subscribed(feed)
    await live.ready
    down = true
    await churn([0, 1])
    await eventually(() => expect(errors.length).toBeGreaterThan(0))
    down = false
    await eventually(() => expect(live.events).toHaveLength(4), { timeoutMs: 5_000 })
    expect(live.events.map((e) => (e.type === 'run.status' ? `${e.candidateId}:${e.status}` : e.type))).toEqual([
      'svc-0:queued',
      'svc-0:not_started',
      'svc-1:queued',
      'svc-1:not_started',
    ])
    for (const stop of subscriptions.splice(0)) stop()
  })
})

async function readAll(store: MigrationStore) {
  const entries = []
  for (let after: string | undefined; ; ) {
    const page = await store.listActivity({ limit: 1_000, ...(after ? { after } : {}) })
    entries.push(...page)
    if (page.length < 1_000) return entries
    after = page.at(-1)!.id
  }
}
