import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { serve, type ServerType } from '@hono/node-server'
import { createServer, type IncomingMessage } from 'node:http'
import { LoomError, memoryStore, type Actor } from '@loom/core'
import { startBackend, type Backend } from './backend'
import { readConfig } from './config'
import { SESSION_COOKIE } from './session'

const opened: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close()
})

async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), 'loom-console-backend-'))
  opened.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function started(backend: Promise<Backend>) {
  const b = await backend
  opened.push(() => b.close())
  return b
}

const announcement = {
  id: 'app-chart',
  name: 'App chart',
  steps: [{ name: 'bump', workerApp: 'charts' }],
  candidates: [{ id: 'billing-api' }, { id: 'checkout' }],
}

describe('the embedded backend', () => {
  it('serves the HTTP API under /api over the same Loom the pages use', async () => {
    const backend = await started(startBackend(readConfig({}), { store: memoryStore(), log: () => {} }))
    const announced = await backend.api(
      new Request('http://console.test/api/registry/announce', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(announcement),
      }),
    )
    expect(announced.status).toBe(200)
    expect((await backend.loom.listCandidates('app-chart')).map((c) => c.id)).toEqual(['billing-api', 'checkout'])
    const missing = await backend.api(new Request('http://console.test/api/migrations/nope'))
    expect(missing.status).toBe(404)
    expect(await missing.json()).toEqual({ error: 'migration nope not found', code: 'not_found' })
  })

  it('requires LOOM_TOKEN on the API when it is set', async () => {
    const backend = await started(startBackend(readConfig({ LOOM_TOKEN: 'op' }), { store: memoryStore(), log: () => {} }))
    expect((await backend.api(new Request('http://console.test/api/migrations'))).status).toBe(401)
    const ok = await backend.api(new Request('http://console.test/api/migrations', { headers: { authorization: 'Bearer op' } }))
    expect(ok.status).toBe(200)
  })

  it('knows named operators and workers on the API: a token, or a GET with a live session', async () => {
    const config = readConfig({ LOOM_OPERATORS: 'alice:tok-alice,bob:tok-bob', LOOM_WORKERS: 'charts:tok-charts' })
    const backend = await started(startBackend(config, { store: memoryStore(), log: () => {} }))
    const call = (path: string, init: RequestInit = {}) => backend.api(new Request(`http://console.test/api${path}`, init))
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
    const announced = await call('/registry/announce', {
      method: 'POST',
      headers: { ...bearer('tok-charts'), 'content-type': 'application/json' },
      body: JSON.stringify(announcement),
    })
    expect(announced.status).toBe(200)

    expect((await call('/migrations')).status).toBe(401)
    expect((await call('/migrations', { headers: bearer('tok-alice') })).status).toBe(200)
    expect((await call('/migrations', { headers: bearer('wrong') })).status).toBe(401)
    // A worker's token is a worker's: an operator route answers 403.
    const asWorker = await call('/migrations', { headers: bearer('tok-charts') })
    expect(asWorker.status).toBe(403)
    expect(await asWorker.json()).toMatchObject({ code: 'forbidden' })

    const session = await backend.sessions.create({ kind: 'operator', name: 'alice' })
    const cookie = { cookie: `theme=dark; ${SESSION_COOKIE}=${session.id}` }
    expect((await call('/migrations', { headers: cookie })).status).toBe(200)
    // A cookie never stands in for a token that was sent and is wrong.
    expect((await call('/migrations', { headers: { ...cookie, ...bearer('wrong') } })).status).toBe(401)
    // Nor does it change anything through /api: that takes a token.
    const queue = (headers: Record<string, string>) =>
      call('/migrations/app-chart/queue', {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ candidateId: 'checkout' }),
      })
    expect((await queue(cookie)).status).toBe(401)
    expect((await queue(bearer('tok-bob'))).status).toBe(202)
    // Signed out: the same cookie is refused.
    await backend.sessions.revoke(session.id)
    expect((await call('/migrations', { headers: cookie })).status).toBe(401)
    // A session of an operator no longer configured counts for nothing.
    const stale = await backend.sessions.create({ kind: 'operator', name: 'carol' })
    expect(await backend.sessionActor(stale.id)).toBeNull()
    expect((await call('/migrations', { headers: { cookie: `${SESSION_COOKIE}=${stale.id}` } })).status).toBe(401)
  })

  it('acts for the actor it is given: an operator may queue, a worker may not', async () => {
    const config = readConfig({ LOOM_OPERATORS: 'alice:tok-alice', LOOM_WORKERS: 'charts:tok-charts' })
    const backend = await started(startBackend(config, { store: memoryStore(), log: () => {} }))
    await backend.loomFor({ kind: 'worker', name: 'charts' }).announce(announcement)
    const worker = await backend
      .loomFor({ kind: 'worker', name: 'charts' })
      .queue('app-chart', 'checkout')
      .catch((e: unknown) => e)
    expect(LoomError.is(worker, 'forbidden')).toBe(true)
    await expect(backend.loomFor({ kind: 'operator', name: 'alice' }).queue('app-chart', 'checkout')).resolves.toBe('app-chart__checkout')
  })

  it("shows each migration's owner its own token when it calls the worker, and only at allowed URLs", async () => {
    const seen: Array<{ path: string; authorization: string | undefined }> = []
    const worker = createServer((request: IncomingMessage, response) => {
      seen.push({ path: request.url ?? '', authorization: request.headers.authorization })
      request.resume()
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'application/json' })
        response.end(request.url === '/dry-run' ? JSON.stringify({ steps: [] }) : '{}')
      })
    })
    await new Promise<void>((resolve) => worker.listen(0, '127.0.0.1', resolve))
    opened.push(() => new Promise((resolve) => worker.close(resolve)))
    const address = worker.address()
    const workerUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`

    const config = readConfig({
      LOOM_OPERATORS: 'alice:tok-alice',
      LOOM_WORKERS: 'charts:tok-charts,topics:tok-topics',
      LOOM_WORKER_TOKEN: 'tok-shared',
      LOOM_WORKER_URLS: workerUrl,
    })
    const backend = await started(startBackend(config, { store: memoryStore(), log: () => {} }))
    const announce = (token: string, body: object) =>
      backend.api(
        new Request('http://console.test/api/registry/announce', {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }),
      )
    expect((await announce('tok-topics', { ...announcement, workerUrl })).status).toBe(200)
    const elsewhere = await announce('tok-charts', { ...announcement, id: 'other', workerUrl: 'http://127.0.0.1:9/admin' })
    expect(elsewhere.status).toBe(400)
    expect(((await elsewhere.json()) as { error: string }).error).toMatch(/^workerUrl: /)

    const alice: Actor = { kind: 'operator', name: 'alice' }
    // Only who was called, and with which token, matters here; not what the dry run found.
    await backend
      .loomFor(alice)
      .dryRun('app-chart', 'billing-api')
      .catch(() => undefined)
    const runId = await backend.loomFor(alice).queue('app-chart', 'billing-api')
    await backend.loomFor(alice).execute(runId)
    const deadline = Date.now() + 10_000
    while (!seen.some((s) => s.path === '/steps/dispatch') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(seen.map((s) => s.path).sort()).toEqual(['/dry-run', '/steps/dispatch'])
    // Worker topics announced the migration, so it is shown topics' token, not the shared one.
    expect(seen.every((s) => s.authorization === 'Bearer tok-topics')).toBe(true)
  })

  it('keeps sign-in sessions in a table of its own database, across a restart', async () => {
    const dataDir = await tempDir()
    const config = readConfig({ LOOM_DATA_DIR: dataDir, LOOM_OPERATORS: 'alice:tok-alice' })
    const first = await startBackend(config, { log: () => {} })
    let id: string
    try {
      id = (await first.sessions.create({ kind: 'operator', name: 'alice' })).id
      await expect(first.sessionActor(id)).resolves.toEqual({ kind: 'operator', name: 'alice' })
    } finally {
      await first.close()
    }
    const second = await started(startBackend(config, { log: () => {} }))
    await expect(second.sessionActor(id)).resolves.toEqual({ kind: 'operator', name: 'alice' })
    await second.sessions.revoke(id)
    await expect(second.sessionActor(id)).resolves.toBeNull()
  })

  it('keeps its data in PGlite in the data folder across a restart', async () => {
    const dataDir = await tempDir()
    const config = readConfig({ LOOM_DATA_DIR: dataDir })
    const first = await startBackend(config, { log: () => {} })
    try {
      await first.loom.announce(announcement)
      await first.loom.queue('app-chart', 'checkout')
    } finally {
      await first.close()
    }
    const second = await started(startBackend(config, { log: () => {} }))
    const statuses = Object.fromEntries((await second.loom.listCandidates('app-chart')).map((c) => [c.id, c.status]))
    expect(statuses).toEqual({ 'billing-api': 'not_started', checkout: 'queued' })
  })
})

describe('the remote backend (LOOM_URL)', () => {
  it('works against another Loom through @loom/client and forwards /api to it', async () => {
    const origin = await started(startBackend(readConfig({ LOOM_TOKEN: 'op' }), { store: memoryStore(), log: () => {} }))
    await origin.loom.announce(announcement)
    const server: ServerType = await new Promise((resolve) => {
      const s = serve({ fetch: (request) => origin.api(request), port: 0, hostname: '127.0.0.1' }, () => resolve(s))
    })
    opened.push(() => new Promise((resolve) => server.close(resolve)))
    const address = server.address()
    const port = typeof address === 'object' && address ? address.port : 0

    const remote = await started(startBackend(readConfig({ LOOM_URL: `http://127.0.0.1:${port}/api`, LOOM_TOKEN: 'op' })))
    expect(remote.mode).toBe('remote')
    const runId = await remote.loom.queue('app-chart', 'billing-api')
    expect(runId).toBe('app-chart__billing-api')
    expect((await origin.loom.listCandidates('app-chart')).find((c) => c.id === 'billing-api')?.status).toBe('queued')
    // The run page looks a candidate up by its id, without paging through the others.
    expect(await remote.loom.getCandidate('app-chart', 'billing-api')).toEqual({ id: 'billing-api', status: 'queued', runId })

    // The same typed errors as in-process.
    const conflict = await remote.loom.queue('app-chart', 'billing-api').catch((e: unknown) => e)
    expect(LoomError.is(conflict, 'conflict')).toBe(true)

    // The browser's /api requests are forwarded with their own credentials.
    const forwarded = await remote.api(
      new Request('http://console.test/api/migrations?summary=true', { headers: { authorization: 'Bearer op' } }),
    )
    expect(forwarded.status).toBe(200)
    const body = (await forwarded.json()) as { migrations: Array<{ id: string; counts: Record<string, number> }> }
    expect(body.migrations.map((m) => [m.id, m.counts.queued])).toEqual([['app-chart', 1]])
    expect((await remote.api(new Request('http://console.test/api/migrations'))).status).toBe(401)
  })

  it('keeps sign-in sessions in a file in the data folder, holding hashes only', async () => {
    const dataDir = await tempDir()
    const config = readConfig({ LOOM_URL: 'http://127.0.0.1:9/api', LOOM_TOKEN: 'op', LOOM_DATA_DIR: dataDir })
    const first = await startBackend(config)
    const { id } = await first.sessions.create({ kind: 'operator', name: 'operator' })
    await first.close()
    const { readFile } = await import('node:fs/promises')
    expect(await readFile(join(dataDir, 'console-sessions.json'), 'utf8')).not.toContain(id)
    const second = await started(startBackend(config))
    await expect(second.sessionActor(id)).resolves.toEqual({ kind: 'operator', name: 'operator' })
    // The remote Loom sees this console's own token, whoever signed in.
    expect(second.loomFor({ kind: 'operator', name: 'operator' })).toBe(second.loom)
  })

  it('answers 503 on /api when the remote Loom cannot be reached', async () => {
    const remote = await started(startBackend(readConfig({ LOOM_URL: 'http://127.0.0.1:9/api' })))
    const response = await remote.api(new Request('http://console.test/api/health'))
    expect(response.status).toBe(503)
    expect(await response.json()).toMatchObject({ code: 'unavailable' })
  })
})
