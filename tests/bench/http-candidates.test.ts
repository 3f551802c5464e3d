/**
 * bench/http-candidates.ts at 200 candidates, as a test of correctness, not of time, so that
 * the benchmark cannot rot: through `app.request` (no socket, no autocannon), every loomApp
 * route it times answers exactly what its bare counterpart answers, and what it claims to be.
 */
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { answerOf, type Apps, buildApps, check, LIST_PATH, lines, PAGE, pagePath } from '../../bench/http-candidates'

const N = 200

describe('bench/http-candidates.ts', () => {
  let built: Awaited<ReturnType<typeof buildApps>>
  let apps: Apps
  let tag: string

  beforeAll(async () => {
    built = await buildApps(N)
    apps = built.apps
    tag = built.page.headers.etag!
  })
  afterAll(() => built.loom.close())

  it('times the whole list, the page of 50 after svc-100 and its 304, with the goals of issue 15', () => {
    expect(pagePath(N)).toBe(`${LIST_PATH}?limit=50&after=svc-100`)
    expect(lines(N, tag).map((l) => [l.section, l.app, l.against, l.status, l.goal])).toEqual([
      ['list', 'bare', undefined, 200, undefined],
      ['list', 'loom', 'bare', 200, undefined],
      ['list', 'serialize', 'bare', 200, undefined],
      ['list', 'cached', 'bare', 200, undefined],
      ['page', 'barePage', undefined, 200, undefined],
      ['page', 'loom', 'barePage', 200, 0.5],
      ['page', 'cached', 'barePage', 200, undefined],
      ['conditional', 'bareConditional', undefined, 304, undefined],
      ['conditional', 'loom', 'bareConditional', 304, 0.9],
      ['conditional', 'cached', 'bareConditional', 304, 0.9],
    ])
  })

  it('finds nothing wrong: every route answers what its line says and what its bare route answers', async () => {
    expect(await check(apps, N)).toEqual([])
  })

  it('answers the page with the bare route’s body, X-Total-Count and ETag, uncached and cached', async () => {
    const bare = await answerOf(apps.barePage, pagePath(N))
    const ids = (JSON.parse(new TextDecoder().decode(bare.bytes)) as { id: string }[]).map((c) => c.id)
    expect(ids).toEqual(Array.from({ length: PAGE }, (_, i) => `svc-${101 + i}`))
    expect(bare.headers['x-total-count']).toBe(String(N))
    for (const app of [apps.loom, apps.cached, apps.cached]) {
      const got = await answerOf(app, pagePath(N))
      expect(got.status).toBe(200)
      expect(Buffer.from(got.bytes).equals(Buffer.from(bare.bytes))).toBe(true)
      expect(got.headers).toEqual(bare.headers)
    }
  })

  it('answers the conditional GET 304 with no body and the same ETag, uncached and cached', async () => {
    expect(tag).toMatch(/^W\/".+"$/)
    for (const app of [apps.bareConditional, apps.loom, apps.cached]) {
      const got = await answerOf(app, pagePath(N), { 'if-none-match': tag })
      expect(got.status).toBe(304)
      expect(got.bytes.length).toBe(0)
      expect(got.headers.etag).toBe(tag)
      expect(got.headers['cache-control']).toBe('no-cache')
    }
    // Another tag is not the page's: 200 with the body, on the bare route as on loomApp.
    for (const app of [apps.bareConditional, apps.loom]) {
      expect((await answerOf(app, pagePath(N), { 'if-none-match': 'W/"other"' })).status).toBe(200)
    }
  })

  it('answers the whole list with the bare route’s bytes, and c.json with the same body', async () => {
    const bare = await answerOf(apps.bare, LIST_PATH)
    expect((JSON.parse(new TextDecoder().decode(bare.bytes)) as unknown[]).length).toBe(N)
    for (const app of [apps.loom, apps.cached, apps.serialize]) {
      expect(Buffer.from((await answerOf(app, LIST_PATH)).bytes).equals(Buffer.from(bare.bytes))).toBe(true)
    }
  })

  it('reports a bare route that answers other bytes, or no 304 (the check is not vacuous)', async () => {
    const wrongPage = new Hono().get('/migrations/:id/candidates', (c) => c.body(built.list.bytes, 200, built.page.headers))
    const no304 = new Hono().get('/migrations/:id/candidates', (c) => c.body(built.page.bytes, 200, built.page.headers))
    const problems = await check({ ...apps, barePage: wrongPage, bareConditional: no304 }, N)
    expect(problems).toEqual(
      expect.arrayContaining([
        `page: bare route (same bytes): ${N} candidates from svc-0, not ${PAGE} from svc-101`,
        `page: loomApp, bodyCache off: ${built.page.bytes.length} bytes of body, not the bare route's ${built.list.bytes.length} bytes`,
        'conditional: bare route (compares the tag): status 200, not 304',
        "conditional: loomApp, bodyCache off: status 304, the bare route's 200",
      ]),
    )
  })
})
