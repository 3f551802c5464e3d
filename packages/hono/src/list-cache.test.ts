import { eventually } from '@loom/core/testing'
import { describe, expect, it } from 'vitest'
import { M, announcement, candidates, setup } from '../test/helpers'

describe('cacheCandidateLists', () => {
  it('answers the same bytes as without the cache, and sees every change made through loom', async () => {
    const cached = await setup({ cacheCandidateLists: true })
    const list = async () => {
      const res = await cached.app.request(`/migrations/${M}/candidates`)
      expect(res.headers.get('content-type')).toBe('application/json')
      return res.text()
    }
    const uncached = async () => JSON.stringify(await cached.loom.listCandidates(M))
    await cached.loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(3) }))

    expect(await list()).toBe(await uncached())
    const runId = await cached.loom.queue(M, 'svc-0')
    expect(JSON.parse(await list())[0].status).toBe('queued')
    await cached.loom.execute(runId)
    expect(JSON.parse(await list())[0].status).toBe('running')
    await eventually(() => expect(cached.worker.stepsOf(runId)).toHaveLength(1))
    // The engine ends the run on its own: the change comes from the run host, not a request.
    await cached.loom.complete(runId, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true })
    await eventually(async () => expect(JSON.parse(await list())[0].status).toBe('completed'))
    await cached.loom.submitCandidates(M, [{ id: 'new-svc' }])
    expect(JSON.parse(await list()).map((c: { id: string }) => c.id)).toEqual(['new-svc', 'svc-0'])
    expect(await list()).toBe(await uncached())
    await cached.loom.deleteMigration(M)
    expect((await cached.app.request(`/migrations/${M}/candidates`)).status).toBe(404)
    await cached.close()
  })

  it('serves a query from the store, not from the cache', async () => {
    const t = await setup({ cacheCandidateLists: true })
    await t.loom.announce(announcement(M, { candidates: candidates(3) }))
    await t.app.request(`/migrations/${M}/candidates`)
    const res = await t.app.request(`/migrations/${M}/candidates?limit=1`)
    expect((await res.json()).map((c: { id: string }) => c.id)).toEqual(['svc-0'])
    expect(res.headers.get('x-total-count')).toBe('3')
    await t.close()
  })

  it('never keeps a list read before a change that landed while it was read', async () => {
    const t = await setup({ cacheCandidateLists: true })
    await t.loom.announce(announcement(M, { candidates: candidates(2) }))
    const original = t.loom.listCandidates.bind(t.loom)
    let queueDuringRead = true
    ;(t.loom as { listCandidates: unknown }).listCandidates = async (id: string) => {
      const list = await original(id)
      // A change lands after the list was read but before it is stored.
      if (queueDuringRead) {
        queueDuringRead = false
        await t.loom.queue(M, 'svc-1')
      }
      return list
    }
    const stale = await (await t.app.request(`/migrations/${M}/candidates`)).json()
    expect(stale[1].status).toBe('not_started')
    const fresh = await (await t.app.request(`/migrations/${M}/candidates`)).json()
    expect(fresh[1].status).toBe('queued')
    await t.close()
  })
})
