import { type Loom, createLoom, localEngine } from '@loom/core'
import { eventually, expectLoomError } from '@loom/core/testing'
import { describe, expect, it } from 'vitest'
import { M, announcement, candidates, setup } from '../test/helpers'
import { bodyCache } from './conditional'
import { type ServedLoom, loomApp } from './index'

/** Every versioned route, each a representation of its own. */
const ROUTES = [
  '/migrations',
  '/migrations?summary=true',
  `/migrations/${M}`,
  `/migrations/${M}/candidates`,
  `/migrations/${M}/candidates?limit=2`,
]

type Setup = Awaited<ReturnType<typeof setup>>

/** What each route answers when nothing is kept: straight from `loom`, serialized as the app serializes. */
async function fresh(loom: Loom, path: string): Promise<string> {
  const url = new URL(path, 'http://loom.test')
  if (url.pathname === '/migrations') {
    return JSON.stringify({ migrations: await loom.listMigrations({ summary: url.searchParams.get('summary') === 'true' }) })
  }
  if (url.pathname === `/migrations/${M}`) return JSON.stringify(await loom.getMigration(M))
  if (!url.search) return JSON.stringify(await loom.listCandidates(M))
  return JSON.stringify((await loom.searchCandidates(M, { limit: Number(url.searchParams.get('limit')) })).candidates)
}

/** A second Loom over the same store: a replica, whose changes this process's Loom hears of only through the store. */
function replicaOf(t: Setup) {
  const replica = createLoom({ store: t.store, engine: localEngine(), onError: () => {}, reconcile: false })
  return { replica, close: () => replica.close() }
}

/** `loom` with every read a route builds its body from counted. */
function countingReads(loom: Awaited<ReturnType<typeof setup>>['loom']) {
  const reads: string[] = []
  const served: ServedLoom = {
    ...loom,
    versionOf: loom.versionOf,
    as: (actor) => {
      const caller = loom.as(actor)
      return {
        ...caller,
        listMigrations: ((options?: { summary?: boolean }) => {
          reads.push('listMigrations')
          return caller.listMigrations(options)
        }) as Loom['listMigrations'],
        getMigration: (id) => {
          reads.push('getMigration')
          return caller.getMigration(id)
        },
        listCandidates: (id) => {
          reads.push('listCandidates')
          return caller.listCandidates(id)
        },
        searchCandidates: (id, query) => {
          reads.push('searchCandidates')
          return caller.searchCandidates(id, query)
        },
      }
    },
  }
  return { served, reads }
}

describe('ETag and If-None-Match', () => {
  it('tags every versioned route, each representation with its own tag, and answers a current tag 304 without a body', async () => {
    const t = await setup()
    await t.loom.announce(announcement(M, { candidates: candidates(3) }))
    const tags: string[] = []
    for (const path of ROUTES) {
      const first = await t.call('GET', path)
      expect(first.status).toBe(200)
      expect(first.text).toBe(await fresh(t.loom, path))
      const tag = first.headers.get('etag')!
      expect(tag).toMatch(/^W\/"[\w.:~+-]+"$/)
      expect(first.headers.get('cache-control')).toBe('no-cache')
      tags.push(tag)

      const again = await t.call('GET', path, undefined, { 'If-None-Match': tag })
      expect(again.status).toBe(304)
      expect(again.text).toBe('')
      expect(again.headers.get('etag')).toBe(tag)
      expect(again.headers.get('cache-control')).toBe('no-cache')
      expect(again.headers.get('content-type')).toBeNull()
    }
    expect(new Set(tags).size).toBe(ROUTES.length)
    // A tag of one URL is not current for another: the summary list does not answer 304 to the full list's tag.
    expect((await t.call('GET', '/migrations?summary=true', undefined, { 'If-None-Match': tags[0]! })).status).toBe(200)
    // The page's total comes with it, also when it is served from the kept body.
    expect((await t.call('GET', `/migrations/${M}/candidates?limit=2`)).headers.get('x-total-count')).toBe('3')
    await t.close()
  })

  it('answers the old tag 200 with the new body after each change, through this Loom or a replica sharing the store', async () => {
    const t = await setup()
    const { replica, close } = replicaOf(t)
    await t.loom.announce(announcement(M, { candidates: candidates(3) }))
    const tags = new Map<string, string>()
    for (const path of ROUTES) tags.set(path, (await t.call('GET', path)).headers.get('etag')!)

    const changes: Array<[string, () => Promise<unknown>]> = [
      ['queue', () => t.loom.queue(M, 'svc-0')],
      ['submit candidates', () => t.loom.submitCandidates(M, [...candidates(3), { id: 'new-svc' }])],
      ['announce', () => t.loom.announce({ ...announcement(M), name: 'Renamed' })],
      ['a transition through a replica', () => replica.dequeue(`${M}__svc-0`)],
      ['a queue through a replica', () => replica.queue(M, 'svc-1')],
    ]
    for (const [change, make] of changes) {
      await make()
      for (const path of ROUTES) {
        const res = await t.call('GET', path, undefined, { 'If-None-Match': tags.get(path)! })
        expect({ change, path, status: res.status }).toEqual({ change, path, status: 200 })
        expect(res.text).toBe(await fresh(t.loom, path))
        expect(res.headers.get('etag')).not.toBe(tags.get(path))
        tags.set(path, res.headers.get('etag')!)
        expect((await t.call('GET', path, undefined, { 'If-None-Match': tags.get(path)! })).status).toBe(304)
      }
    }
    // Another migration changes the catalog, not this migration.
    await replica.announce(announcement('other', { candidates: candidates(1) }))
    expect((await t.call('GET', '/migrations', undefined, { 'If-None-Match': tags.get('/migrations')! })).status).toBe(200)
    expect((await t.call('GET', `/migrations/${M}`, undefined, { 'If-None-Match': tags.get(`/migrations/${M}`)! })).status).toBe(304)
    await close()
    await t.close()
  })

  it('honours `*` once the resource is known to have a representation, and lists of tags compared weakly', async () => {
    const t = await setup()
    await t.loom.announce(announcement(M, { candidates: candidates(3) }))
    const path = `/migrations/${M}/candidates?limit=1`
    const tag = (await t.call('GET', path)).headers.get('etag')!
    const strong = tag.replace(/^W\//, '')
    const ask = (condition: string, at = path) => t.call('GET', at, undefined, { 'If-None-Match': condition })

    expect((await ask('*')).status).toBe(304)
    expect((await ask(`"other", ${tag}`)).status).toBe(304)
    expect((await ask(`W/"a,b" ,${strong}`)).status).toBe(304)
    expect((await ask(strong)).status).toBe(304)
    expect((await ask('"other", W/"more"')).status).toBe(200)
    expect((await ask(tag.slice(0, -1))).status).toBe(200)
    // Without the condition these would not be 2xx, so the condition is not evaluated (RFC 9110 §13.2.1).
    expect((await ask('*', '/migrations/ghost/candidates')).status).toBe(404)
    expect((await ask('*', `/migrations/${M}/candidates?after=svc-0&offset=1`)).json.field).toBe('query.after')
    expect((await ask('*', `/migrations/${M}/candidates?after=ghost`)).status).toBe(400)
    expect((await ask(tag, `/migrations/${M}/candidates?after=ghost`)).status).toBe(400)
    await t.close()
  })

  it('reads the version before the body: a change landing in between leaves the tag older than the body, never newer', async () => {
    const t = await setup()
    await t.loom.announce(announcement(M, { candidates: candidates(2) }))
    let change: (() => Promise<unknown>) | undefined = () => t.loom.queue(M, 'svc-1')
    const served: ServedLoom = {
      ...t.loom,
      async versionOf(id) {
        const version = await t.loom.versionOf(id)
        const now = change
        change = undefined
        await now?.()
        return version
      },
    }
    const app = loomApp(served)
    const raced = await app.request(`/migrations/${M}/candidates`)
    const racedTag = raced.headers.get('etag')!
    expect((await raced.json())[1].status).toBe('queued')
    // The body kept under the older version is never served for it: the store is past that version.
    const again = await app.request(`/migrations/${M}/candidates`, { headers: { 'If-None-Match': racedTag } })
    expect(again.status).toBe(200)
    expect((await again.json())[1].status).toBe('queued')
    expect(again.headers.get('etag')).not.toBe(racedTag)
    expect((await app.request(`/migrations/${M}/candidates`, { headers: { 'If-None-Match': again.headers.get('etag')! } })).status).toBe(
      304,
    )
    await t.close()
  })

  it('sends no ETag and ignores If-None-Match when the Loom cannot tell versions', async () => {
    const t = await setup()
    await t.loom.announce(announcement(M, { candidates: candidates(2) }))
    const { versionOf: _, ...remote } = t.loom
    const app = loomApp(remote)
    for (const path of ROUTES) {
      const res = await app.request(path, { headers: { 'If-None-Match': '*' } })
      expect(res.status).toBe(200)
      expect(res.headers.get('etag')).toBeNull()
      expect(res.headers.get('cache-control')).toBeNull()
      expect(await res.text()).toBe(await fresh(t.loom, path))
    }
    expect((await app.request(`/migrations/${M}/candidates?limit=1`)).headers.get('x-total-count')).toBe('2')
    await t.close()
  })
})

describe('cursor paging', () => {
  it('pages by `after` with the total of every match, and refuses a cursor with an offset or one the migration lacks', async () => {
    const t = await setup()
    await t.loom.announce(announcement(M, { candidates: candidates(7) }))
    const pages: string[][] = []
    let after: string | undefined
    do {
      const res = await t.call('GET', `/migrations/${M}/candidates?q=payments&limit=2${after ? `&after=${after}` : ''}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('x-total-count')).toBe('4')
      pages.push(res.json.map((c: { id: string }) => c.id))
      after = res.json.length === 2 ? res.json[1].id : undefined
    } while (after)
    expect(pages).toEqual([['svc-0', 'svc-2'], ['svc-4', 'svc-6'], []])
    // A cursor need not match the filters: the page starts after it in submission order.
    const fromOdd = await t.call('GET', `/migrations/${M}/candidates?q=payments&limit=2&after=svc-1`)
    expect(fromOdd.json.map((c: { id: string }) => c.id)).toEqual(['svc-2', 'svc-4'])

    const both = await t.call('GET', `/migrations/${M}/candidates?after=svc-1&offset=2`)
    expect([both.status, both.json.code, both.json.field]).toEqual([400, 'invalid', 'query.after'])
    const unknown = await t.call('GET', `/migrations/${M}/candidates?after=ghost&limit=2`)
    expect([unknown.status, unknown.json.field]).toEqual([400, 'query.after'])
    expect(unknown.json.error).toContain('ghost')
    await t.close()
  })
})

describe('bodyCache', () => {
  it('serves a kept body, with its headers, while the store is at its version, and never after a change by a replica', async () => {
    const t = await setup()
    const { replica, close } = replicaOf(t)
    await t.loom.announce(announcement(M, { candidates: candidates(3) }))
    const { served, reads } = countingReads(t.loom)
    const app = loomApp(served)
    const get = async (path: string) => {
      const res = await app.request(path)
      return { text: await res.text(), total: res.headers.get('x-total-count'), etag: res.headers.get('etag') }
    }
    const all = async () => {
      const answers = []
      for (const path of ROUTES) answers.push(await get(path))
      return answers
    }
    const first = await all()
    expect(reads).toEqual(['listMigrations', 'listMigrations', 'getMigration', 'listCandidates', 'searchCandidates'])
    expect(await all()).toEqual(first)
    expect(reads).toHaveLength(5)
    expect(first[4]!.total).toBe('3')

    // The replica's change reaches this process's Loom through the store only: the next read must already see it.
    await replica.queue(M, 'svc-0')
    const after = await all()
    for (const [i, path] of ROUTES.entries()) expect(after[i]!.text).toBe(await fresh(t.loom, path))
    expect(JSON.parse(after[3]!.text)[0].status).toBe('queued')
    expect(after[4]!.total).toBe('3')
    expect(reads).toHaveLength(10)
    await close()
    await t.close()
  })

  it('sees a run the engine ends on its own, and a deleted migration', async () => {
    const t = await setup()
    await t.loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(2) }))
    const list = async () => (await t.call('GET', `/migrations/${M}/candidates`)).json
    expect(await list()).toHaveLength(2)
    const runId = await t.loom.queue(M, 'svc-0')
    await t.loom.execute(runId)
    expect((await list())[0].status).toBe('running')
    await eventually(() => expect(t.worker.stepsOf(runId)).toHaveLength(1))
    // The change comes from the run host, not from a request.
    await t.loom.complete(runId, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true })
    await eventually(async () => expect((await list())[0].status).toBe('completed'))
    await t.loom.deleteMigration(M)
    expect((await t.call('GET', `/migrations/${M}/candidates`)).status).toBe(404)
    expect((await t.call('GET', `/migrations/${M}`, undefined, { 'If-None-Match': '*' })).status).toBe(404)
    await t.close()
  })

  it('builds every body when turned off, and still tags them', async () => {
    const t = await setup()
    await t.loom.announce(announcement(M, { candidates: candidates(2) }))
    const { served, reads } = countingReads(t.loom)
    const app = loomApp(served, { bodyCache: false })
    const tags = new Set<string | null>()
    for (let i = 0; i < 3; i++) tags.add((await app.request(`/migrations/${M}`)).headers.get('etag'))
    expect(reads).toEqual(['getMigration', 'getMigration', 'getMigration'])
    expect([...tags]).toEqual([expect.stringMatching(/^W\//)])
    await t.close()
  })

  it('keeps one body per resource, within its bytes and entries, the least recently used dropped first', () => {
    const cache = bodyCache({ maxBytes: 10, maxEntries: 2 })
    const body = (text: string) => ({ bytes: new TextEncoder().encode(text), headers: {} })
    cache.set('a', '1', body('aaaa'))
    cache.set('a', '2', body('aaa'))
    expect(cache.get('a', '1')).toBeUndefined()
    expect(cache.size).toEqual({ entries: 1, bytes: 3 })
    cache.set('b', '1', body('bbb'))
    cache.get('a', '2')
    cache.set('c', '1', body('ccc'))
    // b was used least recently: two entries at most.
    expect([cache.get('a', '2'), cache.get('b', '1'), cache.get('c', '1')].map((e) => e && new TextDecoder().decode(e.bytes))).toEqual([
      'aaa',
      undefined,
      'ccc',
    ])
    cache.set('d', '1', body('ddddddd'))
    // 13 bytes: a, the least recently used, goes.
    expect(cache.size).toEqual({ entries: 2, bytes: 10 })
    expect(cache.get('a', '2')).toBeUndefined()
    // Larger than the whole cache: served, not kept, and it pushes nothing out.
    cache.set('e', '1', body('e'.repeat(11)))
    expect(cache.get('e', '1')).toBeUndefined()
    expect(cache.size).toEqual({ entries: 2, bytes: 10 })
  })

  it('refuses sizes that are not positive integers, naming the option', async () => {
    const t = await setup()
    const error = await expectLoomError(
      Promise.resolve().then(() => loomApp(t.loom, { bodyCache: { maxBytes: 0 } })),
      'invalid',
    )
    expect(error.details?.field).toBe('bodyCache.maxBytes')
    expect(() => loomApp(t.loom, { bodyCache: { maxEntries: 1.5 } })).toThrow('bodyCache.maxEntries: must be a positive integer')
    await t.close()
  })
})

describe('the OpenAPI document', () => {
  it('lists If-None-Match, the ETag and the 304 of each versioned route, and the cursor of the candidate list', async () => {
    const t = await setup()
    const doc = (await t.call('GET', '/openapi.json')).json
    const versioned = [doc.paths['/migrations'].get, doc.paths['/migrations/{id}'].get, doc.paths['/migrations/{id}/candidates'].get]
    for (const op of versioned) {
      expect(op.parameters.map((p: { name: string; in: string }) => `${p.in} ${p.name}`)).toContain('header If-None-Match')
      expect(Object.keys(op.responses['200'].headers)).toEqual(expect.arrayContaining(['ETag', 'Cache-Control']))
      expect(op.responses['304'].content).toBeUndefined()
    }
    const list = doc.paths['/migrations/{id}/candidates'].get
    const after = list.parameters.find((p: { name: string }) => p.name === 'after')
    expect(after).toMatchObject({ in: 'query', required: false, schema: { $ref: '#/components/schemas/Slug' } })
    expect(after.description).toContain('Not with `offset`')
    expect(list.responses['400'].description).toContain('`after` with `offset`')
    await t.close()
  })
})
