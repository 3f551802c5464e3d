import { serve, type ServerType } from '@hono/node-server'
import { DEFAULT_LIMITS, type MigrationStore, memoryStore } from '@loom/core'
import { migrate, pglite, postgresStore } from '@loom/postgres'
import type { AddressInfo } from 'node:net'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { M, announcement, setup } from './helpers'

/**
 * Bounded work per request, over HTTP: bytes that are not UTF-8, JSON nested too deep, reserved
 * map keys and out-of-range pages are each a 400 naming the field that changes nothing, on the
 * memory store and on PostgreSQL; and the 4 MiB announce of 1.4 M empty steps is
 * refused at once by a real server that keeps answering `/health` meanwhile.
 */

const DATABASE_URL = process.env.DATABASE_URL
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

/** PostgreSQL in a fresh schema of this file: the server of `DATABASE_URL`, else PGlite embedded. */
let pgStore: Promise<MigrationStore> | undefined
function postgresStoreOfThisFile() {
  pgStore ??= (async () => {
    const schema = `loom_test_${Math.random().toString(36).slice(2, 10)}`
    if (DATABASE_URL) {
      const sql = postgres(DATABASE_URL, { onnotice: () => {}, max: 4 })
      cleanups.push(async () => {
        await sql.unsafe(`drop schema if exists "${schema}" cascade`)
        await sql.end({ timeout: 5 })
      })
      await migrate(sql, { schema })
      return postgresStore(sql, { schema })
    }
    const embedded = await pglite()
    cleanups.push(() => embedded.close())
    await migrate(embedded.sql, { schema })
    return postgresStore(embedded.sql, { schema })
  })()
  return pgStore
}

/** Each store the edge is proven on; the PostgreSQL one is shared by this file's tests, so each test uses its own migration id. */
const STORES = [
  { name: 'the memory store', store: async () => memoryStore() },
  { name: DATABASE_URL ? 'PostgreSQL' : 'PGlite (DATABASE_URL is not set)', store: postgresStoreOfThisFile },
]

let ids = 0
const freshId = () => `${M}-${++ids}`

const concat = (...parts: Array<string | number[]>) =>
  new Uint8Array(parts.flatMap((part) => (typeof part === 'string' ? [...new TextEncoder().encode(part)] : part)))

describe.each(STORES)('on $name', ({ store: storeOf }) => {
  // Opening the store (PGlite starts in seconds on a loaded machine) is not part of any test's time.
  beforeAll(async () => {
    await storeOf()
  }, 60_000)

  async function app() {
    const t = await setup({ store: await storeOf() })
    cleanups.push(() => t.close())
    const id = freshId()
    await t.loom.announce(announcement(id, { candidates: [{ id: 'svc-0', metadata: { team: 'payments' } }] }))
    const state = async () => ({ migration: await t.loom.getMigration(id), candidates: await t.loom.listCandidates(id) })
    return { ...t, id, state }
  }

  it('refuses a body that is not UTF-8 with 400, storing nothing (no U+FFFD)', async () => {
    const t = await app()
    const before = await t.state()
    const bodies: Array<[string, Uint8Array<ArrayBuffer>]> = [
      ['/registry/announce', concat(JSON.stringify(announcement(t.id)).slice(0, -1), ',"description":"caf', [0xe9], '"}')],
      [`/migrations/${t.id}/candidates`, concat('{"candidates":[{"id":"svc-0","metadata":{"team":"pay', [0xff, 0xfe], 'ments"}}]}')],
      [`/migrations/${t.id}/candidates`, concat('{"candidates":[{"id":"svc-1","state":{"k":"', [0xed, 0xa0, 0x80], '"}}]}')],
      [
        `/event/${t.id}__svc-0`,
        concat('{"stepName":"update-chart","candidate":{"id":"svc-0"},"success":true,"metadata":{"a":"', [0xc0, 0xaf], '"}}'),
      ],
      [`/runs/${t.id}__svc-0/execute`, concat('{"resume":true,"x":"', [0x80], '"}')],
    ]
    for (const [path, body] of bodies) {
      const response = await t.app.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      expect(response.status, path).toBe(400)
      expect(await response.json()).toEqual({ error: 'body: is not valid UTF-8', code: 'invalid', field: 'body' })
    }
    const after = await t.state()
    expect(after).toEqual(before)
    expect(JSON.stringify(after)).not.toContain('\uFFFD')
  })

  it('stores UTF-8 byte for byte', async () => {
    const t = await app()
    const team = 'Zürich ✓ 𝄞 \u2028'
    const answer = await t.call('POST', `/migrations/${t.id}/candidates`, { candidates: [{ id: 'svc-1', metadata: { team } }] })
    expect(answer.status).toBe(204)
    expect((await t.call('GET', `/migrations/${t.id}/candidates/svc-1`)).json.metadata.team).toBe(team)
  })

  it('refuses JSON nested deeper than 32 with 400 naming body and the limit, on required and optional bodies', async () => {
    const t = await app()
    const before = await t.state()
    const deep = (levels: number) => `${'['.repeat(levels - 1)}1${']'.repeat(levels - 1)}`
    for (const path of ['/registry/announce', `/migrations/${t.id}/candidates`, `/event/${t.id}__svc-0`, `/runs/${t.id}__svc-0/execute`]) {
      // 33 levels: the body's object and 32 arrays inside it.
      const answer = await t.call('POST', path, `{"candidates":${deep(33)}}`)
      expect(answer.status, path).toBe(400)
      expect(answer.json, path).toEqual({
        error: `body: nested deeper than the limit of ${DEFAULT_LIMITS.depth} (limits.depth)`,
        code: 'invalid',
        field: 'body',
      })
    }
    // 32 levels get past the depth check to the schema, which names the field.
    const shallow = await t.call('POST', `/migrations/${t.id}/candidates`, `{"candidates":${deep(32)}}`)
    expect(shallow.status).toBe(400)
    expect(shallow.json.field).toMatch(/^candidates\.0/)
    expect(shallow.json.error).not.toContain('limits.depth')
    expect(await t.state()).toEqual(before)
  })

  it.each(['__proto__', 'constructor', 'prototype'])('refuses the reserved key %s with 400 naming it and its map', async (key) => {
    const t = await app()
    const before = await t.state()
    const map = `{"team":"payments",${JSON.stringify(key)}:"x"}`
    const step = '{"name":"update-chart","workerApp":"charts"'
    const requests: Array<[string, string, string]> = [
      [`/migrations/${t.id}/candidates`, `{"candidates":[{"id":"svc-0","metadata":${map}}]}`, 'candidates.0.metadata'],
      [`/migrations/${t.id}/candidates`, `{"candidates":[{"id":"svc-1","state":${map}}]}`, 'candidates.0.state'],
      ['/registry/announce', `{"id":"${t.id}","name":"x","steps":[${step},"config":${map}}]}`, 'steps.0.config'],
      [
        '/registry/announce',
        `{"id":"${t.id}","name":"x","steps":[${step}}],"candidates":[{"id":"svc-0","metadata":${map}}]}`,
        'candidates.0.metadata',
      ],
      [`/event/${t.id}__svc-0`, `{"stepName":"update-chart","candidate":{"id":"svc-0"},"success":true,"metadata":${map}}`, 'metadata'],
    ]
    for (const [path, body, field] of requests) {
      const answer = await t.call('POST', path, body)
      expect(answer.status, `${path} ${field}`).toBe(400)
      expect(answer.json.code).toBe('invalid')
      expect(answer.json.field).toBe(field)
      expect(answer.json.error).toContain(`${field}: "${key}" is a reserved key`)
    }
    expect(await t.state()).toEqual(before)
  })

  it.each([
    ['offset=2147483648', 'query.offset', 'must be at most 2147483647'],
    ['offset=99999999999999999999', 'query.offset', 'must be at most 2147483647'],
    ['offset=-1', 'query.offset', 'must be at least 0'],
    ['offset=1.5', 'query.offset', 'must be a number'],
    ['limit=10001', 'query.limit', 'must be at most 10000'],
    ['limit=0', 'query.limit', 'must be at least 1'],
    ['limit=99999999999999999999', 'query.limit', 'must be at most 10000'],
  ])('answers ?%s with 400 naming %s, never 500', async (query, field, says) => {
    const t = await app()
    const answer = await t.call('GET', `/migrations/${t.id}/candidates?${query}`)
    expect(answer.status).toBe(400)
    expect(answer.json).toEqual({ error: `${field}: ${says}`, code: 'invalid', field })
    expect(t.errors).toEqual([])
  })

  it('serves the largest page numbers it accepts', async () => {
    const t = await app()
    const last = await t.call('GET', `/migrations/${t.id}/candidates?offset=2147483647&limit=10000`)
    expect(last.status).toBe(200)
    expect(last.json).toEqual([])
    expect(last.headers.get('x-total-count')).toBe('1')
    expect(t.errors).toEqual([])
  })
})

describe('the issue’s hostile announce on a real server', () => {
  it('refuses 1.4 M empty steps (4 MiB) at once while /health keeps answering', async () => {
    const t = await setup()
    cleanups.push(() => t.close())
    const server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: t.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s))
    })
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

    const count = 1_398_000
    const body = new TextEncoder().encode(`{"id":"x","name":"x","steps":[${'{},'.repeat(count - 1)}{}]}`)
    expect(body.length).toBeLessThanOrEqual(4 * 1024 * 1024)
    const health = async () => {
      const started = performance.now()
      const response = await fetch(`${base}/health`)
      await response.text()
      return { status: response.status, ms: performance.now() - started }
    }
    await health() // the first request opens the connection

    // /health every 20 ms. This process is the client and the server, so while the server is busy no
    // ping leaves either: each is timed from when it was due, as a client of its own would see it.
    let announcing = true
    const pings: Array<{ status: number; ms: number }> = []
    const polling = (async () => {
      let due = performance.now()
      while (announcing) {
        const sent = await health()
        pings.push({ status: sent.status, ms: performance.now() - due })
        due += 20
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - performance.now())))
      }
    })()
    const started = performance.now()
    const response = await fetch(`${base}/registry/announce`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    const answer = await response.json()
    const announceMs = performance.now() - started
    announcing = false
    await polling
    pings.push(await health())

    const slowest = Math.max(...pings.map((p) => p.ms))
    console.info(
      `hostile announce (${body.length} bytes, ${count} steps): answered ${response.status} in ${announceMs.toFixed(0)} ms; ` +
        `/health answered ${pings.length} times meanwhile, slowest ${slowest.toFixed(0)} ms, ` +
        `median ${pings
          .map((p) => p.ms)
          .sort((a, b) => a - b)
          [Math.floor(pings.length / 2)]!.toFixed(0)} ms`,
    )
    expect(response.status).toBe(400)
    expect(answer).toEqual({
      error: 'steps: more than the limit of 100 steps (limits.steps)',
      code: 'invalid',
      field: 'steps',
    })
    expect(pings.every((p) => p.status === 200)).toBe(true)
    expect(announceMs).toBeLessThan(1_000)
    expect(slowest).toBeLessThan(500)
    expect(await t.loom.listMigrations()).toEqual([])
  })
})
