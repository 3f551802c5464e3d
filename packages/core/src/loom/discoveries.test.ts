import { describe, expect, it } from 'vitest'
import { LoomError } from '../errors'
import { localEngine } from '../local-engine'
import { memoryStore } from '../memory-store'
import type { MigrationStore } from '../ports'
import type { LoomEvent } from '../schemas'
import { announcement, candidates, eventually, expectLoomError } from '../testing/fakes'
import { createLoom, type LoomDeps } from './index'

const M = 'app-chart'
const HOUR = 3600_000

/** A Loom on a clock the test moves, without a reconciler unless asked. */
function clocked(deps: Partial<LoomDeps> = {}) {
  const clock = { now: Date.parse('2026-03-01T00:00:00.000Z') }
  const loom = createLoom({ store: memoryStore(), engine: localEngine(), now: () => new Date(clock.now), reconcile: false, ...deps })
  return { loom, clock }
}

describe('discoveries', () => {
  it('expire an hour after they were opened or given their last part, unless discoveryTtl says otherwise', async () => {
    const { loom, clock } = clocked()
    await loom.announce(announcement(M, { candidates: candidates(1) }))
    const { discoveryId, expiresAt } = await loom.openDiscovery(M)
    expect(expiresAt).toBe('2026-03-01T01:00:00.000Z')
    clock.now += 0.9 * HOUR
    await loom.addToDiscovery(M, discoveryId, [{ id: 'a' }])
    clock.now += 0.9 * HOUR
    await loom.addToDiscovery(M, discoveryId, [{ id: 'b' }])
    clock.now += 1.1 * HOUR
    const gone = await expectLoomError(loom.commitDiscovery(M, discoveryId), 'not_found')
    expect(gone.message).toContain(discoveryId)
    expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['svc-0'])

    const short = clocked({ discoveryTtl: '10m' })
    await short.loom.announce(announcement(M, { candidates: candidates(1) }))
    expect((await short.loom.openDiscovery(M)).expiresAt).toBe('2026-03-01T00:10:00.000Z')
  })

  it('refuses a discoveryTtl it cannot read, naming the option', () => {
    let thrown: unknown
    try {
      createLoom({ store: memoryStore(), engine: localEngine(), discoveryTtl: 'an hour' })
    } catch (error) {
      thrown = error
    }
    expect(LoomError.is(thrown, 'invalid')).toBe(true)
    expect((thrown as LoomError).details).toEqual({ field: 'discoveryTtl' })
  })

  it('hold at most limits.discoveryCandidates, refusing the part that would pass it whole', async () => {
    const { loom } = clocked({ limits: { discoveryCandidates: 3, candidates: 2 } })
    await loom.announce(announcement(M, { candidates: candidates(1) }))
    const { discoveryId } = await loom.openDiscovery(M)
    await loom.addToDiscovery(M, discoveryId, [{ id: 'a' }, { id: 'b' }])
    const over = await expectLoomError(loom.addToDiscovery(M, discoveryId, [{ id: 'c' }, { id: 'd' }]), 'invalid')
    expect(over.details).toEqual({ field: 'candidates' })
    expect(over.message).toContain('limits.discoveryCandidates')
    // Each part is held to the limit of one request too.
    const part = await expectLoomError(loom.addToDiscovery(M, discoveryId, [{ id: 'c' }, { id: 'd' }, { id: 'e' }]), 'invalid')
    expect(part.message).toContain('limits.candidates')
    await loom.addToDiscovery(M, discoveryId, [{ id: 'c' }])
    await loom.commitDiscovery(M, discoveryId)
    expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['a', 'b', 'c'])
  })

  it('are pruned by the reconciler once expired, with what they staged', async () => {
    const store = memoryStore()
    const pruned: string[] = []
    const spied: MigrationStore = {
      ...store,
      pruneDiscoveries: async (before, limit) => {
        const count = await store.pruneDiscoveries(before, limit)
        if (count > 0) pruned.push(before)
        return count
      },
    }
    const { loom, clock } = clocked({ store: spied, reconcile: { intervalMs: 20 } })
    try {
      await loom.announce(announcement(M, { candidates: candidates(1) }))
      const { discoveryId } = await loom.openDiscovery(M)
      await loom.addToDiscovery(M, discoveryId, candidates(5, 'found'))
      await loom.ready
      clock.now += 2 * HOUR
      await eventually(() => expect(pruned).toEqual(['2026-03-01T02:00:00.000Z']))
      // Gone from the store, whatever the clock says now.
      clock.now -= 2 * HOUR
      await expectLoomError(loom.commitDiscovery(M, discoveryId), 'not_found')
    } finally {
      await loom.close()
    }
  })
})

describe('patches', () => {
  it('hold upsert and remove together to limits.candidates, naming remove', async () => {
    const { loom } = clocked({ limits: { candidates: 3 } })
    await loom.announce(announcement(M, { candidates: candidates(3) }))
    const error = await expectLoomError(
      loom.patchCandidates(M, { upsert: [{ id: 'a' }, { id: 'b' }], remove: ['svc-0', 'svc-1'] }),
      'invalid',
    )
    expect(error.details?.field).toBe('remove')
    expect(error.message).toContain('limits.candidates')
    expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['svc-0', 'svc-1', 'svc-2'])
  })
})

describe('patches and discoveries by workers', () => {
  it('are a worker’s on its own migrations only, and each is in the log', async () => {
    const { loom } = clocked()
    const charts = loom.as({ kind: 'worker', name: 'charts' })
    const other = loom.as({ kind: 'worker', name: 'other' })
    await charts.announce(announcement(M, { candidates: candidates(2) }))
    const events: LoomEvent[] = []
    const stop = loom.subscribe((event) => {
      events.push(event)
    })
    await expectLoomError(other.patchCandidates(M, { upsert: [{ id: 'x' }] }), 'forbidden')
    await expectLoomError(other.openDiscovery(M), 'forbidden')
    await charts.patchCandidates(M, { upsert: [{ id: 'x' }], remove: ['svc-0'] })
    const { discoveryId } = await charts.openDiscovery(M)
    await expectLoomError(other.addToDiscovery(M, discoveryId, [{ id: 'y' }]), 'forbidden')
    await expectLoomError(other.commitDiscovery(M, discoveryId), 'forbidden')
    await charts.addToDiscovery(M, discoveryId, [{ id: 'y' }, { id: 'z' }])
    await charts.commitDiscovery(M, discoveryId)
    expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['y', 'z'])
    const log = (await loom.activity(M)).entries.map((e) => [e.type, e.actor.name, e.detail])
    expect(log.slice(-2)).toEqual([
      ['candidates.patched', 'charts', { upserted: 1, removed: 1 }],
      ['candidates.submitted', 'charts', { discoveryId, count: 2 }],
    ])
    // The commit is a submission to subscribers too.
    await eventually(() => expect(events.filter((e) => e.type === 'candidates.submitted').map((e) => 'count' in e && e.count)).toEqual([2]))
    stop()
  })
})
