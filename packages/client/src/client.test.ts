import { LoomError, createLoom, localEngine, memoryStore, type LoomEvent } from '@loom/core'
import { announcement, candidates, eventually, expectLoomError } from '@loom/core/testing'
import { type LoomAppOptions, loomApp } from '@loom/hono'
import { afterEach, describe, expect, it } from 'vitest'
import { type ClientOptions, createClient } from './index'

const M = 'app-chart'
const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

/** A client over a real loomApp, through `app.request`, with every request recorded. */
async function over(
  options: {
    token?: string
    appToken?: string
    app?: LoomAppOptions
    client?: Partial<ClientOptions>
    wrap?: (request: Request, response: Response) => Response
  } = {},
) {
  const store = memoryStore()
  const loom = createLoom({ store, engine: localEngine(), onError: () => {} })
  await loom.ready
  const app = loomApp(loom, options.app ?? (options.appToken ? { token: options.appToken } : {}))
  const requests: Request[] = []
  const errors: unknown[] = []
  const client = createClient({
    baseUrl: 'http://loom.test/api/',
    ...(options.token ? { token: options.token } : {}),
    headers: { 'x-trace': 'abc' },
    reconnectDelayMs: 10,
    onError: (e) => errors.push(e),
    ...options.client,
    fetch: async (input, init) => {
      const request = new Request(input, init)
      requests.push(request.clone())
      const url = new URL(request.url)
      const response = await app.request(url.pathname.replace(/^\/api/, '') + url.search, request)
      return options.wrap ? options.wrap(request, response) : response
    },
  })
  cleanups.push(
    () => client.close(),
    () => loom.close(),
  )
  return { client, loom, store, requests, errors }
}

describe('requests', () => {
  it('sends the token and extra headers, and encodes path segments', async () => {
    const { client, requests } = await over({ token: 'op', appToken: 'op' })
    await expectLoomError(client.getMigration('a b/c'), 'invalid')
    await expectLoomError(client.getRun('..'), 'not_found')
    await expectLoomError(client.getRun('.'), 'not_found')
    // `..` and `.` resolve away in any URL; they land on no route, which answers not_found.
    expect(requests.map((r) => new URL(r.url).pathname)).toEqual(['/api/migrations/a%20b%2Fc', '/api/', '/api/runs/'])
    expect(requests.every((r) => r.headers.get('authorization') === 'Bearer op' && r.headers.get('x-trace') === 'abc')).toBe(true)
  })

  it('checks the ids of queue and dryRun before sending, as createLoom does', async () => {
    const { client, requests } = await over()
    const error = await expectLoomError(client.queue('', 'svc-0'), 'invalid')
    expect(error.message).toBe('migrationId: must not be empty')
    await expectLoomError(client.dryRun(M, 'a__b'), 'invalid')
    expect(requests).toEqual([])
  })

  it('gets one candidate with its status, its ids encoded and checked before sending', async () => {
    const { client, loom, requests } = await over()
    await loom.announce(announcement(M, { candidates: [...candidates(1), { id: 'svc.a', kind: 'application' }] }))
    const runId = await loom.queue(M, 'svc-0')
    expect(await client.getCandidate(M, 'svc-0')).toEqual({ ...candidates(1)[0], status: 'queued', runId })
    expect(await client.getCandidate(M, 'svc.a')).toEqual({ id: 'svc.a', kind: 'application', status: 'not_started' })
    await expectLoomError(client.getCandidate(M, 'ghost'), 'not_found')
    await expectLoomError(client.getCandidate('ghost', 'svc-0'), 'not_found')
    expect(requests.map((r) => new URL(r.url).pathname)).toEqual([
      `/api/migrations/${M}/candidates/svc-0`,
      `/api/migrations/${M}/candidates/svc.a`,
      `/api/migrations/${M}/candidates/ghost`,
      '/api/migrations/ghost/candidates/svc-0',
    ])
    const error = await expectLoomError(client.getCandidate(M, ''), 'invalid')
    expect(error.message).toBe('candidateId: must not be empty')
    await expectLoomError(client.getCandidate(M, 'a/b'), 'invalid')
    await expectLoomError(client.getCandidate('..', 'svc-0'), 'invalid')
    expect(requests).toHaveLength(4)
  })

  it('sends execute’s options as its body only when there are any', async () => {
    const { client, loom, requests } = await over()
    await loom.announce(announcement(M, { candidates: candidates(2) }))
    await client.execute(await loom.queue(M, 'svc-0'))
    await client.execute(await loom.queue(M, 'svc-1'), { resume: true })
    expect(requests.map((r) => [new URL(r.url).pathname, r.headers.get('content-type')])).toEqual([
      [`/api/runs/${M}__svc-0/execute`, null],
      [`/api/runs/${M}__svc-1/execute`, 'application/json'],
    ])
    expect(await requests[0]!.text()).toBe('')
    expect(await requests[1]!.text()).toBe('{"resume":true}')
    expect(await loom.getRun(`${M}__svc-1`)).toMatchObject({ status: 'running' })
    const error = await expectLoomError(client.execute(`${M}__svc-0`, { resume: 'yes' } as never), 'invalid')
    expect(error.details?.field).toBe('resume')
  })

  it('sends cancel’s reason as its body only when there are options, as API 0.2 servers expect', async () => {
    const { client, loom, requests } = await over()
    await loom.announce(announcement(M, { candidates: candidates(2) }))
    await client.cancel(await loom.queue(M, 'svc-0'))
    await client.cancel(await loom.queue(M, 'svc-1'), { reason: 'wrong chart version' })
    expect(requests.map((r) => [r.method, new URL(r.url).pathname, r.headers.get('content-type')])).toEqual([
      ['POST', `/api/runs/${M}__svc-0/cancel`, null],
      ['POST', `/api/runs/${M}__svc-1/cancel`, 'application/json'],
    ])
    expect(await requests[0]!.text()).toBe('')
    expect(await requests[1]!.text()).toBe('{"reason":"wrong chart version"}')
    const cancelled = (await loom.getMigration(M)).cancelledAttempts ?? []
    expect(cancelled.map((a) => [a.candidateId, a.reason])).toEqual([
      ['svc-0', undefined],
      ['svc-1', 'wrong chart version'],
    ])
    await loom.queue(M, 'svc-0')
    const error = await expectLoomError(client.cancel(`${M}__svc-0`, { reason: 'x'.repeat(2001) }), 'invalid')
    expect(error.details).toEqual({ httpStatus: 400, field: 'reason' })
    expect((await loom.getRun(`${M}__svc-0`)).status).toBe('queued')
  })

  it('reads the activity log with its cursor and limit in the query, and a run’s history', async () => {
    const { client, loom, requests } = await over()
    await loom.announce(announcement(M, { candidates: candidates(2) }))
    const runId = await loom.queue(M, 'svc-0')
    await loom.cancel(runId, { reason: 'not yet' })
    const first = await client.activity(M, { limit: 2 })
    expect(first.entries.map((e) => e.type)).toEqual(['migration.announced', 'run.queue'])
    const rest = await client.activity(M, { after: first.next!, limit: 2 })
    expect(rest).toEqual({ entries: [expect.objectContaining({ type: 'run.cancel', detail: { reason: 'not yet', previous: 'queued' } })] })
    expect(await client.activity(M)).toEqual(await loom.activity(M))
    expect(requests.map((r) => new URL(r.url).pathname + new URL(r.url).search)).toEqual([
      `/api/migrations/${M}/activity?limit=2`,
      `/api/migrations/${M}/activity?after=${first.next}&limit=2`,
      `/api/migrations/${M}/activity`,
    ])
    expect(await client.history(runId)).toEqual(await loom.history(runId))
    expect(new URL(requests.at(-1)!.url).pathname).toBe(`/api/runs/${runId}/history`)
    const bad = await expectLoomError(client.activity(M, { after: 'abc' }), 'invalid')
    expect(bad.details).toEqual({ httpStatus: 400, field: 'query.after' })
    // An id that would change the route is refused before sending.
    const count = requests.length
    await expectLoomError(client.activity(''), 'invalid')
    await expectLoomError(client.activity('a/b'), 'invalid')
    expect(requests).toHaveLength(count)
    await expectLoomError(client.history(`${M}__ghost`), 'not_found')
  })

  it('maps a worker’s 403 on activity and history to forbidden', async () => {
    const { client, loom } = await over({ token: 'wk', app: { token: 'op', workerToken: 'wk' } })
    await loom.announce(announcement(M, { candidates: candidates(1) }))
    await expectLoomError(client.activity(M), 'forbidden')
    await expectLoomError(client.history(`${M}__svc-0`), 'forbidden')
    await expectLoomError(client.cancel(await loom.queue(M, 'svc-0'), { reason: 'mine' }), 'forbidden')
  })

  it('pages a search with its query and reads the total from X-Total-Count', async () => {
    const { client, loom, requests } = await over()
    await loom.announce(announcement(M, { candidates: candidates(5) }))
    const page = await client.searchCandidates(M, { q: 'payments', limit: 2, offset: 1 })
    expect(page.total).toBe(3)
    expect(page.candidates.map((c) => c.id)).toEqual(['svc-2', 'svc-4'])
    expect(new URL(requests[0]!.url).search).toBe('?q=payments&limit=2&offset=1')
    expect(await client.searchCandidates(M, {})).toMatchObject({ total: 5 })
  })

  it('pages a search by cursor, passing `after`', async () => {
    const { client, loom, requests } = await over()
    await loom.announce(announcement(M, { candidates: candidates(5) }))
    const first = await client.searchCandidates(M, { limit: 2 })
    const second = await client.searchCandidates(M, { limit: 2, after: first.candidates.at(-1)!.id })
    const third = await client.searchCandidates(M, { limit: 2, after: second.candidates.at(-1)!.id })
    expect([first, second, third].map((page) => [page.total, page.candidates.map((c) => c.id)])).toEqual([
      [5, ['svc-0', 'svc-1']],
      [5, ['svc-2', 'svc-3']],
      [5, ['svc-4']],
    ])
    expect(requests.map((r) => new URL(r.url).search)).toEqual(['?limit=2', '?limit=2&after=svc-1', '?limit=2&after=svc-3'])
    const both = await expectLoomError(client.searchCandidates(M, { after: 'svc-1', offset: 1 }), 'invalid')
    expect(both.details).toEqual({ httpStatus: 400, field: 'query.after' })
    const gone = await expectLoomError(client.searchCandidates(M, { after: 'ghost' }), 'invalid')
    expect(gone.details?.field).toBe('query.after')
  })
})

describe('conditional requests', () => {
  /** A client whose every request is recorded with the status it was answered. */
  /** Runs reads, answering for each request they made whether it carried If-None-Match. */
  const conditionsOf =
    (requests: Request[]) =>
    async (...reads: Array<() => Promise<unknown>>) => {
      const from = requests.length
      for (const read of reads) await read()
      return requests.slice(from).map((r) => r.headers.get('if-none-match') !== null)
    }

  const recorded = async (client: Partial<ClientOptions> = {}) => {
    const statuses: number[] = []
    const t = await over({
      client,
      wrap: (_request, response) => {
        statuses.push(response.status)
        return response
      },
    })
    return { ...t, statuses }
  }

  it('revalidates the lists and the migration with If-None-Match, and answers a 304 from the kept body', async () => {
    const { client, loom, requests, statuses } = await recorded()
    await loom.announce(announcement(M, { candidates: candidates(3) }))
    const reads = [
      () => client.listMigrations(),
      () => client.listMigrations({ summary: true }),
      () => client.getMigration(M),
      () => client.listCandidates(M),
      () => client.searchCandidates(M, { q: 'payments', limit: 1 }),
    ]
    const first: unknown[] = []
    for (const read of reads) first.push(await read())
    expect(first).toEqual([
      await loom.listMigrations(),
      await loom.listMigrations({ summary: true }),
      await loom.getMigration(M),
      await loom.listCandidates(M),
      await loom.searchCandidates(M, { q: 'payments', limit: 1 }),
    ])
    expect(requests.map((r) => r.headers.get('if-none-match'))).toEqual([null, null, null, null, null])
    // A caller changing what it got changes nothing kept.
    ;(first[3] as Array<{ status: string }>)[0]!.status = 'mangled'
    const again: unknown[] = []
    for (const read of reads) again.push(await read())
    expect(statuses.slice(5)).toEqual([304, 304, 304, 304, 304])
    expect(requests.slice(5).every((r) => r.headers.get('if-none-match')?.startsWith('W/"'))).toBe(true)
    expect(again).toEqual([first[0], first[1], first[2], await loom.listCandidates(M), first[4]])
    expect((again[4] as { total: number }).total).toBe(2)

    await loom.queue(M, 'svc-0')
    const changed: unknown[] = []
    for (const read of reads) changed.push(await read())
    // The page (svc-0 only) shows the status too, so every read changed.
    expect(statuses.slice(10)).toEqual([200, 200, 200, 200, 200])
    expect((changed[3] as Array<{ status: string }>)[0]!.status).toBe('queued')
    expect(changed[2]).toEqual(await loom.getMigration(M))
    expect(changed[4]).toEqual(await loom.searchCandidates(M, { q: 'payments', limit: 1 }))
  })

  it('keeps the bodies of a few URLs only, the least recently used dropped first', async () => {
    const { client, loom, requests } = await recorded({ conditionalRequests: { maxEntries: 2 } })
    await loom.announce(announcement(M, { candidates: candidates(3) }))
    const conditions = conditionsOf(requests)
    const a = () => client.getMigration(M)
    const b = () => client.listCandidates(M)
    const c = () => client.searchCandidates(M, { limit: 1 })
    expect(await conditions(a, b, a, c)).toEqual([false, false, true, false])
    // c pushed out b, the least recently used.
    expect(await conditions(a, c, b)).toEqual([true, true, false])
  })

  it('keeps bodies within maxBytes: a body larger than the bound is not kept, smaller ones push out the oldest', async () => {
    // The bodies' sizes, as the server serializes them, from a first Loom with the same contents.
    const probe = await recorded({ conditionalRequests: false })
    await probe.loom.announce(announcement(M, { candidates: candidates(3) }))
    const size = (value: unknown) => JSON.stringify(value).length
    const whole = size(await probe.loom.getMigration(M))
    const page = size((await probe.loom.searchCandidates(M, { limit: 1 })).candidates)
    // Room for the migration and one page, not for a second page besides.
    const { client, loom, requests } = await recorded({ conditionalRequests: { maxBytes: whole + page + 10 } })
    await loom.announce(announcement(M, { candidates: candidates(3) }))
    const conditions = conditionsOf(requests)
    const a = () => client.getMigration(M)
    const b = () => client.searchCandidates(M, { limit: 1 })
    const c = () => client.searchCandidates(M, { limit: 1, offset: 1 })
    expect(await conditions(a, b, a, b)).toEqual([false, false, true, true])
    // c pushes out a, the least recently used, though two entries would be allowed.
    expect(await conditions(c, b, a)).toEqual([false, true, false])
    const small = await recorded({ conditionalRequests: { maxBytes: page - 1 } })
    await small.loom.announce(announcement(M, { candidates: candidates(3) }))
    await small.client.searchCandidates(M, { limit: 1 })
    await small.client.searchCandidates(M, { limit: 1 })
    expect(small.requests.map((r) => r.headers.get('if-none-match'))).toEqual([null, null])
    expect(() => createClient({ baseUrl: 'http://loom.test', conditionalRequests: { maxBytes: -1 } })).toThrow(
      expect.objectContaining({ code: 'invalid', details: { field: 'conditionalRequests.maxBytes' } }),
    )
  })

  it('sends no If-None-Match when turned off, or to a server that sends no ETag', async () => {
    const off = await recorded({ conditionalRequests: false })
    await off.loom.announce(announcement(M))
    await off.client.getMigration(M)
    await off.client.getMigration(M)
    expect(off.statuses).toEqual([200, 200])
    expect(off.requests.map((r) => r.headers.get('if-none-match'))).toEqual([null, null])

    const { versionOf: _, ...remote } = off.loom
    const app = loomApp(remote)
    const sent: Array<string | null> = []
    const client = createClient({
      baseUrl: 'http://loom.test',
      fetch: (input, init) => {
        sent.push(new Headers(init?.headers).get('if-none-match'))
        return app.request(input, init)
      },
    })
    expect(await client.getMigration(M)).toEqual(await client.getMigration(M))
    expect(sent).toEqual([null, null])
    expect(() => createClient({ baseUrl: 'http://loom.test', conditionalRequests: { maxEntries: -1 } })).toThrow(
      'conditionalRequests.maxEntries: must be a whole number, 0 or more',
    )
  })
})

describe('errors', () => {
  it('rebuilds the LoomError from the {error, code} body, with its details', async () => {
    const { client, loom } = await over()
    await loom.announce(announcement(M, { candidates: candidates(1) }))
    await loom.queue(M, 'svc-0')
    const conflict = await expectLoomError(client.queue(M, 'svc-0'), 'conflict')
    expect(conflict.message).toContain('the candidate is queued')
    expect(conflict.details).toEqual({ httpStatus: 409, status: 'queued' })
    const invalid = await expectLoomError(client.submitCandidates(M, [{ id: 'a__b' }]), 'invalid')
    expect(invalid.details).toEqual({ httpStatus: 400, field: 'candidates.0.id' })
    expect(LoomError.is(invalid)).toBe(true)
  })

  it('rebuilds forbidden from a 403: a worker calling an operator method, or changing another worker’s migration', async () => {
    const app = { operators: 'alice:op-token', workers: 'team-a:a-token,team-b:b-token' }
    const { client: teamA, loom } = await over({ token: 'a-token', app })
    await teamA.announce(announcement(M, { candidates: candidates(1) }))
    expect((await loom.getMigration(M)).owner).toBe('team-a')

    const queue = await expectLoomError(teamA.queue(M, 'svc-0'), 'forbidden')
    expect(queue.message).toMatch(/^worker team-a may not call queue: /)
    expect(queue.details).toEqual({ httpStatus: 403 })

    const { client: teamB, loom: other } = await over({ token: 'b-token', app })
    await other.as({ kind: 'worker', name: 'team-a' }).announce(announcement(M, { candidates: candidates(2) }))
    const takeover = await expectLoomError(teamB.announce(announcement(M, { candidates: [] })), 'forbidden')
    expect(takeover.message).toBe(`worker team-b may not announce migration ${M}: it belongs to worker team-a`)
    await expectLoomError(teamB.submitCandidates(M, []), 'forbidden')
    expect((await other.listCandidates(M)).map((c) => c.id)).toEqual(['svc-0', 'svc-1'])
    expect(LoomError.is(takeover, 'forbidden')).toBe(true)
  })

  it('tells a missing token (unauthorized) from a known caller without the right (forbidden)', async () => {
    const app = { token: 'op-token', workerToken: 'wk-token' }
    const anonymous = (await over({ app })).client
    const error = await expectLoomError(anonymous.listMigrations(), 'unauthorized')
    expect(error.details).toEqual({ httpStatus: 401 })
    const { client: worker, loom } = await over({ token: 'wk-token', app })
    await expectLoomError(worker.listMigrations(), 'forbidden')
    expect((await worker.announce(announcement(M))).owner).toBe('worker')
    expect((await loom.listMigrations()).map((m) => [m.id, m.owner])).toEqual([[M, 'worker']])
  })

  it('rebuilds unavailable with the failing dependency from a 503 health answer', async () => {
    const store = memoryStore()
    const loom = createLoom({ store: { ...store, ping: () => Promise.reject(new Error('connection refused')) }, engine: localEngine() })
    const app = loomApp(loom)
    const client = createClient({ baseUrl: 'http://loom.test', fetch: (input, init) => app.request(input, init) })
    cleanups.push(() => loom.close())
    const error = await expectLoomError(client.health(), 'unavailable')
    expect(error.message).toBe('store: connection refused')
    expect(error.details?.dependency).toBe('store')
  })

  it('answers unavailable for a server that cannot be reached or does not speak the contract', async () => {
    const down = createClient({ baseUrl: 'http://loom.test', fetch: () => Promise.reject(new TypeError('fetch failed')) })
    expect((await expectLoomError(down.listMigrations(), 'unavailable')).message).toBe(
      'Loom at http://loom.test could not be reached: fetch failed',
    )
    const proxy = createClient({
      baseUrl: 'http://loom.test',
      fetch: async () => new Response('<html>Bad gateway</html>', { status: 502 }),
    })
    const error = await expectLoomError(proxy.getMigration(M), 'unavailable')
    expect(error.message).toBe('Loom at http://loom.test answered 502: <html>Bad gateway</html>')
    expect(error.details).toEqual({ httpStatus: 502 })
    const garbled = createClient({ baseUrl: 'http://loom.test', fetch: async () => new Response('not json', { status: 200 }) })
    await expectLoomError(garbled.getMigration(M), 'unavailable')
    // An error body of the contract's shape but a code outside its closed set is not Loom's.
    const teapot = createClient({
      baseUrl: 'http://loom.test',
      fetch: async () => Response.json({ error: 'I am a teapot', code: 'teapot' }, { status: 418 }),
    })
    const odd = await expectLoomError(teapot.getMigration(M), 'unavailable')
    expect(odd.details).toEqual({ httpStatus: 418 })
  })
})

describe('subscribe', () => {
  it('delivers the events of changes made through the client right after subscribing', async () => {
    const { client } = await over()
    const events: LoomEvent[] = []
    const stop = client.subscribe((e) => events.push(e))
    // No pause: the announce waits until the stream is in place.
    await client.announce(announcement(M, { candidates: candidates(1) }))
    await client.submitCandidates(M, candidates(2))
    await eventually(() => expect(events.map((e) => e.type)).toEqual(['migration.updated', 'candidates.submitted']))
    stop()
  })

  it('shares one stream between listeners, and closes it when the last one leaves', async () => {
    const { client, loom, requests } = await over()
    const a: string[] = []
    const b: string[] = []
    const stopA = client.subscribe((e) => a.push(e.type))
    const stopB = client.subscribe((e) => b.push(e.type))
    await client.health()
    await loom.announce(announcement(M))
    await eventually(() => expect([a, b]).toEqual([['migration.updated'], ['migration.updated']]))
    const streams = requests.filter((r) => r.url.endsWith('/events'))
    expect(streams).toHaveLength(1)
    stopA()
    expect(streams[0]!.signal.aborted).toBe(false)
    stopB()
    expect(streams[0]!.signal.aborted).toBe(true)
  })

  it('reconnects after the stream drops, with Last-Event-ID, and misses nothing', async () => {
    let drops = 1
    const { client, loom, requests, errors } = await over({
      // The first stream ends after its first event, as a proxy cutting a long response would.
      wrap: (request, response) => {
        if (!request.url.endsWith('/events') || drops-- <= 0) return response
        const reader = response.body!.getReader()
        let seen = ''
        return new Response(
          new ReadableStream<Uint8Array>({
            async pull(controller) {
              const { done, value } = await reader.read()
              if (done) return controller.close()
              controller.enqueue(value)
              seen += new TextDecoder().decode(value)
              if (seen.includes('data: ')) {
                await reader.cancel()
                controller.close()
              }
            },
          }),
          response,
        )
      },
    })
    await loom.announce(announcement(M, { candidates: candidates(3) }))
    const seen: string[] = []
    const stop = client.subscribe((e) => {
      if (e.type === 'run.status') seen.push(e.candidateId)
    })
    await client.health()
    await loom.queue(M, 'svc-0')
    await loom.queue(M, 'svc-1')
    await loom.queue(M, 'svc-2')
    await eventually(() => expect(seen).toEqual(['svc-0', 'svc-1', 'svc-2']))
    const streams = requests.filter((r) => r.url.endsWith('/events'))
    expect(streams).toHaveLength(2)
    // It resumes after the one event it had: the first queue's entry in the log.
    const [queued] = await loom.activity(M, { limit: 2 }).then((page) => page.entries.slice(1))
    expect(streams[1]!.headers.get('last-event-id')).toBe(queued!.id)
    expect(errors).toEqual([])
    stop()
  })

  it('starts at `after` when it opens the stream, and says when it is in place', async () => {
    const { client, loom } = await over()
    await loom.announce(announcement(M, { candidates: candidates(3) }))
    await loom.queue(M, 'svc-0')
    const after = (await loom.activity(M)).entries.at(-1)!.id
    await loom.queue(M, 'svc-1')
    const seen: string[] = []
    const ready = new Promise<void>((resolve) => {
      client.subscribe((e) => e.type === 'run.status' && seen.push(e.candidateId), { after, onReady: resolve })
    })
    await ready
    await loom.queue(M, 'svc-2')
    await eventually(() => expect(seen).toEqual(['svc-1', 'svc-2']))
    client.close()
  })

  it('keeps calling the other listeners when one throws, and reports the error', async () => {
    const { client, loom, errors } = await over()
    const received: string[] = []
    client.subscribe(() => {
      throw new Error('listener bug')
    })
    client.subscribe((e) => received.push(e.type))
    await client.health()
    await loom.announce(announcement(M))
    await eventually(() => expect(received).toEqual(['migration.updated']))
    expect(errors).toEqual([new Error('listener bug')])
  })

  it('reports a stream refused for the caller’s role as forbidden', async () => {
    const { client, requests, errors } = await over({ token: 'wk', app: { token: 'op', workerToken: 'wk' } })
    const stop = client.subscribe(() => {})
    await eventually(() => expect(requests.filter((r) => r.url.endsWith('/events')).length).toBeGreaterThanOrEqual(2))
    stop()
    expect(errors).toHaveLength(1)
    expect(LoomError.is(errors[0], 'forbidden')).toBe(true)
  })

  it('retries a refused stream and reports the refusal once', async () => {
    const { client, requests, errors } = await over({ appToken: 'op' })
    const stop = client.subscribe(() => {})
    await eventually(() => expect(requests.filter((r) => r.url.endsWith('/events')).length).toBeGreaterThanOrEqual(3))
    stop()
    expect(errors).toHaveLength(1)
    expect(LoomError.is(errors[0], 'unauthorized')).toBe(true)
  })
})
