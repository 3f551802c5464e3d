import type { LoomEvent, LoomInstance } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { describe, expect, it } from 'vitest'
import { M, announcement, candidates, setup } from '../test/helpers'

/** Reads an SSE response: raw blocks (comments included) and the parsed events. */
function reader(response: Response) {
  const blocks: string[] = []
  const source = response.body!.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  const pump = (async () => {
    for (;;) {
      const { done, value } = await source.read().catch(() => ({ done: true, value: undefined }))
      if (done) return
      buffer += value
      let end: number
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        blocks.push(buffer.slice(0, end))
        buffer = buffer.slice(end + 2)
      }
    }
  })()
  const field = (block: string, name: string) =>
    block
      .split('\n')
      .find((l) => l.startsWith(`${name}: `))
      ?.slice(name.length + 2)
  return {
    blocks,
    events: () =>
      blocks
        .filter((b) => field(b, 'data') !== undefined)
        .map((b) => ({ id: field(b, 'id')!, type: field(b, 'event')!, data: JSON.parse(field(b, 'data')!) as LoomEvent })),
    close: async () => {
      await source.cancel()
      await pump
    },
  }
}

/** A Loom whose live subscriptions can be counted. */
function counting(loom: LoomInstance) {
  let active = 0
  const wrapped: LoomInstance = Object.create(loom)
  wrapped.as = () => wrapped
  wrapped.subscribe = (listener, options) => {
    active++
    const off = loom.subscribe(listener, options)
    return () => {
      active--
      off()
    }
  }
  return { wrapped, active: () => active }
}

/** An app with three candidates, and the id of the one event a client saw (svc-0 queued) before it went away. */
async function seenOneThenGone() {
  const t = await setup()
  await t.loom.announce(announcement(M, { candidates: candidates(3) }))
  const first = reader(await t.app.request('/events'))
  await eventually(() => expect(first.blocks).toHaveLength(2))
  await t.loom.queue(M, 'svc-0')
  await eventually(() => expect(first.events()).toHaveLength(1))
  const lastId = first.events()[0]!.id
  await first.close()
  return { t, lastId }
}

describe('GET /events', () => {
  it('streams announcements, submissions, every status change and step results', async () => {
    const t = await setup()
    const res = await t.app.request('/events')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    const stream = reader(res)
    await eventually(() => expect(stream.blocks.slice(0, 2)).toEqual(['retry: 2000', ': connected']))

    await t.call('POST', '/registry/announce', announcement(M, { steps: ['update-chart'], candidates: candidates(1) }))
    await t.call('POST', `/migrations/${M}/candidates`, { candidates: candidates(2) })
    const runId = (await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' })).json.runId
    await t.call('POST', `/runs/${runId}/execute`)
    await eventually(() => expect(t.worker.stepsOf(runId)).toEqual(['update-chart']))
    await t.call('POST', `/event/${runId}`, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true })

    await eventually(() => expect(stream.events().at(-1)?.data).toMatchObject({ type: 'run.status', status: 'completed' }))
    const events = stream.events()
    expect(events.map((e) => e.type)).toEqual([
      'migration.updated',
      'candidates.submitted',
      'run.status',
      'run.status',
      'step.dispatched',
      'step.reported',
      'run.status',
    ])
    expect(events.every((e) => e.type === e.data.type)).toBe(true)
    expect(
      events
        .filter((e) => e.data.type === 'run.status')
        .map((e) => [(e.data as { previous: string }).previous, (e.data as { status: string }).status]),
    ).toEqual([
      ['not_started', 'queued'],
      ['queued', 'running'],
      ['running', 'completed'],
    ])
    expect(events[5]!.data).toMatchObject({ runId, candidateId: 'svc-0', done: true, result: { stepName: 'update-chart', success: true } })
    // Ids are the log's: the event's own, increasing.
    expect(events.every((e) => e.id === e.data.id && /^[0-9]+$/.test(e.id))).toBe(true)
    const numbers = events.map((e) => BigInt(e.id))
    expect(numbers).toEqual([...numbers].sort((a, b) => (a < b ? -1 : 1)))
    expect(events[3]!.data).toMatchObject({ actor: { kind: 'operator' }, attempt: expect.any(Number) })
    await stream.close()
    await t.close()
  })

  it('writes a heartbeat comment periodically', async () => {
    const t = await setup({ heartbeatMs: 10 })
    const stream = reader(await t.app.request('/events'))
    await eventually(() => expect(stream.blocks.filter((b) => b === ': heartbeat').length).toBeGreaterThanOrEqual(2))
    await stream.close()
    await t.close()
  })

  it('replays what a client missed when it reconnects with Last-Event-ID', async () => {
    const { t, lastId } = await seenOneThenGone()

    // Missed while disconnected:
    await t.loom.queue(M, 'svc-1')
    await t.loom.queue(M, 'svc-2')

    const second = reader(await t.app.request('/events', { headers: { 'Last-Event-ID': lastId } }))
    await eventually(() => expect(second.events()).toHaveLength(2))
    expect(second.events().map((e) => (e.data as { candidateId: string }).candidateId)).toEqual(['svc-1', 'svc-2'])

    // An id that is none of the log's (API 0.2's `{epoch}-{n}`) replays nothing.
    const stranger = reader(await t.app.request('/events', { headers: { 'Last-Event-ID': 'deadbeef-1' } }))
    await eventually(() => expect(stranger.blocks).toHaveLength(2))
    expect(stranger.events()).toEqual([])
    await second.close()
    await stranger.close()
    await t.close()
  })

  it('replays from the store on another replica: a client that reconnects elsewhere misses nothing', async () => {
    const { t, lastId } = await seenOneThenGone()
    await t.loom.queue(M, 'svc-1')
    // A second process on the same store, with its own Loom and app.
    const { createLoom, localEngine } = await import('@loom/core')
    const { loomApp } = await import('../src/index')
    const replica = createLoom({ store: t.store, engine: localEngine(), dispatcher: t.worker.dispatcher, reconcile: false })
    const elsewhere = reader(await loomApp(replica).request('/events', { headers: { 'Last-Event-ID': lastId } }))
    await eventually(() => expect(elsewhere.events()).toHaveLength(1))
    await t.loom.queue(M, 'svc-2')
    await eventually(() => expect(elsewhere.events()).toHaveLength(2))
    expect(elsewhere.events().map((e) => (e.data as { candidateId: string }).candidateId)).toEqual(['svc-1', 'svc-2'])
    await elsewhere.close()
    await replica.close()
    await t.close()
  })

  it('replays thousands of missed changes to a client without dropping it', async () => {
    const { t, lastId } = await seenOneThenGone()
    // 3,000 changes missed: far more than a stream may have unsent at once.
    for (let i = 0; i < 1_500; i++) {
      await t.loom.dequeue(`${M}__svc-0`).catch(() => {})
      await t.loom.queue(M, 'svc-0')
    }
    const missed = (await t.store.listActivity({ after: lastId, limit: 10_000 })).length
    expect(missed).toBeGreaterThanOrEqual(2_999)
    const again = reader(await t.app.request('/events', { headers: { 'Last-Event-ID': lastId } }))
    await eventually(() => expect(again.events()).toHaveLength(missed), { timeoutMs: 20_000 })
    expect(again.blocks.includes(': connected')).toBe(true)
    await again.close()
    await t.close()
  })

  it('unsubscribes from Loom when a stream closes', async () => {
    const t = await setup()
    const { wrapped, active } = counting(t.loom)
    const { loomApp } = await import('../src/index')
    const app = loomApp(wrapped)
    const a = reader(await app.request('/events'))
    const b = reader(await app.request('/events'))
    await eventually(() => expect(a.blocks.length + b.blocks.length).toBe(4))
    expect(active()).toBe(2)
    await a.close()
    await eventually(() => expect(active()).toBe(1))
    await b.close()
    await eventually(() => expect(active()).toBe(0))
    await t.close()
  })

  it('requires an operator’s token when tokens are configured: none is 401, a worker’s 403', async () => {
    const t = await setup({ token: 'op', workerToken: 'wk' })
    expect((await t.app.request('/events')).status).toBe(401)
    const worker = await t.app.request('/events', { headers: { authorization: 'Bearer wk' } })
    expect(worker.status).toBe(403)
    expect(await worker.json()).toMatchObject({ code: 'forbidden' })
    const ok = await t.app.request('/events', { headers: { authorization: 'Bearer op' } })
    expect(ok.status).toBe(200)
    await ok.body?.cancel()
    await t.close()
  })
})
